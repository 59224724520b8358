//! The whole control plane at fleet scale: three scheduler replicas (real
//! processes) against FLEET_NODES simulated nodes of 8 devices each, all
//! sessions opened from this process (a channel per 100 nodes), each node
//! running what it is given: a progress report per step, FLEET_STEPS steps
//! of FLEET_STEP_SECONDS each, then the result. A steady stream of
//! submissions keeps the fleet about FLEET_LOAD busy for FLEET_SECONDS
//! (it fills up over the first job's length).
//!
//! Prints the figures, then RESULT lines: submit-to-start p50 and p99, the
//! leader's CPU share and memory, raft entries per job, and the progress
//! reports per second the leader absorbed.
//!
//!     cargo bench --bench fleet                              # 1,000 nodes, 60 s
//!     FLEET_NODES=10000 FLEET_SECONDS=90 cargo bench --bench fleet
//!     FLEET_SECONDS=600 FLEET_RETAIN=2000 cargo bench --bench fleet  # a soak
//!
//! The leader's memory, open files and threads are sampled every 10 s and
//! printed; with FLEET_RETAIN (ended jobs kept) the state stays bounded and
//! so should they.

#[path = "../tests/suite/common/mod.rs"]
#[allow(dead_code)] // A bench uses a few of the integration tests' helpers.
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::replicas::Replicas;
use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::job_service_client::JobServiceClient;
use pb::scheduler_message::Msg as Down;
use pb::worker_message::Msg as Up;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const DEVICES_PER_NODE: u32 = 8;
const NODES_PER_CHANNEL: usize = 100;
/// A job's shape: steps, and seconds per step on a simulated device.
#[derive(Clone, Copy)]
struct JobShape {
    steps: u32,
    step: Duration,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One simulated node: registers, runs what it is assigned (progress each
/// step, then the result), until `stop`.
async fn node(
    name: String,
    channel: Channel,
    shape: JobShape,
    progress: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(256);
    let register = pb::Register {
        node: name.clone(),
        instance: format!("{name}-1"),
        devices: vec![pb::DeviceGroup {
            flavor: "nvidia-h100-80gb".into(),
            count: DEVICES_PER_NODE,
            memory_bytes: 80 << 30,
            free_memory_bytes: None,
            simulated: true,
        }],
        models: vec!["tiny".into()],
        running: Vec::new(),
    };
    let _ = tx
        .send(pb::WorkerMessage {
            msg: Some(Up::Register(register)),
        })
        .await;
    let mut client = pb::worker_session_client::WorkerSessionClient::new(channel);
    let Ok(response) = client.session(ReceiverStream::new(rx)).await else {
        return;
    };
    let mut inbound = response.into_inner();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = heartbeat.tick() => {
                if tx.send(pb::WorkerMessage { msg: Some(Up::Heartbeat(pb::Heartbeat {})) }).await.is_err() {
                    return;
                }
            }
            message = inbound.message() => match message {
                Ok(Some(pb::SchedulerMessage { msg: Some(Down::Assignment(a)) })) => {
                    let tx = tx.clone();
                    let progress = progress.clone();
                    tokio::spawn(run_job(a, shape, tx, progress));
                }
                Ok(Some(_)) => {}
                _ => return,
            },
        }
    }
}

/// A simulated job: a step every `shape.step`, reported; then done.
async fn run_job(
    a: pb::Assignment,
    shape: JobShape,
    tx: mpsc::Sender<pb::WorkerMessage>,
    progress: Arc<AtomicU64>,
) {
    let lease = pb::JobLease {
        job_id: a.job_id.clone(),
        lease_epoch: a.lease_epoch,
    };
    let started = tokio::time::Instant::now();
    for done in 1..=shape.steps {
        tokio::time::sleep_until(started + shape.step * done).await;
        let report = pb::Progress {
            lease: Some(lease.clone()),
            step: done,
            total_steps: shape.steps,
        };
        if tx
            .send(pb::WorkerMessage {
                msg: Some(Up::Progress(report)),
            })
            .await
            .is_err()
        {
            return;
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    let finished = pb::Finished {
        lease: Some(lease),
        artifacts: vec![pb::Artifact {
            kind: "video".into(),
            uri: format!("file:///fleet/{}/video.mp4", a.job_id),
            size_bytes: 1,
            content_type: "video/mp4".into(),
        }],
    };
    let _ = tx
        .send(pb::WorkerMessage {
            msg: Some(Up::Finished(finished)),
        })
        .await;
}

/// A channel to `endpoint`; the benchmark cannot go on without one.
async fn connect(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// CPU seconds (user + system) and resident memory (KiB) of process `pid`.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name.
    let hz = 100.0;
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let nodes: usize = env("FLEET_NODES", 1000);
    let seconds: u64 = env("FLEET_SECONDS", 60);
    let load: f64 = env("FLEET_LOAD", 0.7);
    let shape = JobShape {
        steps: env("FLEET_STEPS", 16u32).max(1),
        step: Duration::from_secs_f64(env("FLEET_STEP_SECONDS", 2.0f64).max(0.001)),
    };
    let retain: String = env("FLEET_RETAIN", "1000000".to_string());
    let replicas = Replicas::new(
        3,
        &["--retain-ended-max", &retain, "--retention-every", "2s"],
    );
    replicas.converged(&[1, 2, 3]).await;
    let leader = replicas.leader().await.expect("a leader");
    let leader_endpoint = replicas.endpoint(leader);
    let leader_pid = replicas.pid(leader).expect("the leader's process");

    // The fleet: sessions multiplexed over a channel per NODES_PER_CHANNEL.
    let (stop_tx, stop) = watch::channel(false);
    let progress = Arc::new(AtomicU64::new(0));
    let opened = Instant::now();
    let mut channel = None;
    for i in 0..nodes {
        if i.is_multiple_of(NODES_PER_CHANNEL) {
            channel = Some(connect(&leader_endpoint).await);
        }
        let channel = channel.clone().expect("a channel");
        tokio::spawn(node(
            format!("sim-{i:05}"),
            channel,
            shape,
            progress.clone(),
            stop.clone(),
        ));
    }
    // One channel for the benchmark's own calls to the leader.
    let leader_channel = connect(&leader_endpoint).await;
    let mut cluster = ClusterServiceClient::new(leader_channel.clone());
    let mut jobs = JobServiceClient::new(leader_channel.clone());
    let mut node_service = pb::node_service_client::NodeServiceClient::new(leader_channel);
    // Wait until every node is registered.
    loop {
        let listed = node_service
            .list(pb::ListNodesRequest {})
            .await
            .map(|r| r.into_inner().nodes.len())
            .unwrap_or(0);
        if listed >= nodes {
            break;
        }
        assert!(
            opened.elapsed() < Duration::from_secs(300),
            "only {listed} of {nodes} nodes registered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{nodes} nodes ({} devices) registered in {:.1} s",
        nodes * DEVICES_PER_NODE as usize,
        opened.elapsed().as_secs_f64()
    );

    // A job holds one device for its steps: this rate keeps about `load`
    // of the fleet busy.
    let job_seconds = f64::from(shape.steps) * shape.step.as_secs_f64();
    let rate = load * (nodes as f64 * f64::from(DEVICES_PER_NODE)) / job_seconds;
    let applied_before = cluster
        .status(pb::ReplicaStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .applied;
    let (cpu_before, _) = cpu_and_rss(leader_pid);
    let progress_before = progress.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut submitted = 0u64;
    let refused = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = tokio::time::Instant::now();
    let mut peak_rss = 0;
    let mut samples: Vec<(u64, u64, usize, u64)> = Vec::new();
    let mut next_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(10);
            let (_, rss) = cpu_and_rss(leader_pid);
            let fds = std::fs::read_dir(format!("/proc/{leader_pid}/fd")).map_or(0, |d| d.count());
            let threads = std::fs::read_to_string(format!("/proc/{leader_pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Threads:"))?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            samples.push((started.elapsed().as_secs(), rss, fds, threads));
        }
        next += interval;
        tokio::time::sleep_until(next).await;
        let request = pb::SubmitRequest {
            spec: Some(pb::JobSpec {
                steps: shape.steps,
                ..common::small_spec("a fleet job", submitted)
            }),
            request_id: String::new(),
        };
        let mut jobs = jobs.clone();
        let refused = refused.clone();
        submitted += 1;
        tokio::spawn(async move {
            if jobs.submit(request).await.is_err() {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        });
        if submitted.is_multiple_of(1000) {
            peak_rss = peak_rss.max(cpu_and_rss(leader_pid).1);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, rss) = cpu_and_rss(leader_pid);
    let progress_sent = progress.load(Ordering::Relaxed) - progress_before;
    let applied_after = cluster
        .status(pb::ReplicaStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .applied;
    let _ = stop_tx.send(true);

    // Submit-to-start of every job that started.
    let mut waits = Vec::new();
    let mut request = pb::ListJobsRequest {
        page_size: 1000,
        ..Default::default()
    };
    loop {
        let page = jobs.list(request.clone()).await.expect("list").into_inner();
        for job in &page.jobs {
            if job.started_at_ms > 0 {
                waits.push((job.started_at_ms - job.created_at_ms) as f64 / 1000.0);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    waits.sort_by(f64::total_cmp);
    let entries_per_job = (applied_after - applied_before) as f64 / submitted.max(1) as f64;
    let cpu_share = (cpu_after - cpu_before) / wall;
    let peak_rss = peak_rss.max(rss);
    println!(
        "{submitted} jobs submitted at {rate:.0}/s over {wall:.0} s ({} refused); {} started",
        refused.load(Ordering::Relaxed),
        waits.len()
    );
    println!(
        "leader: {:.0}% of a core, {:.0} MiB resident at peak",
        cpu_share * 100.0,
        peak_rss as f64 / 1024.0
    );
    println!("{progress_sent} progress reports in {wall:.0} s; {entries_per_job:.2} raft entries per job");
    println!(
        "RESULT fleet_submit_to_start_p50 {:.3} s",
        percentile(&waits, 0.5)
    );
    println!(
        "RESULT fleet_submit_to_start_p99 {:.3} s",
        percentile(&waits, 0.99)
    );
    println!("RESULT fleet_leader_cpu {:.0} %", cpu_share * 100.0);
    println!(
        "RESULT fleet_leader_memory {:.0} MiB",
        peak_rss as f64 / 1024.0
    );
    println!("RESULT fleet_raft_entries_per_job {entries_per_job:.2} entries");
    println!(
        "RESULT fleet_progress_absorbed {:.0} reports/s",
        progress_sent as f64 / wall
    );
}

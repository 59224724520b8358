//! Three scheduler processes under faults: while clients submit, cancel and
//! read jobs and two workers run them, the test kill -9s the leader,
//! restarts replicas and cuts one off from the others (through proxies on
//! every raft link). Afterwards it checks the recorded history:
//!
//! - every acknowledged submission exists exactly once;
//! - a job is finished under at most one lease, and a completed job's
//!   recorded lease is the one the scheduler accepted the result from;
//! - the job operations are linearizable;
//! - every replica ends with the same state.
//!
//! Retention is on (ended jobs are forgotten after RETAIN_ENDED), as in
//! production: an acknowledged job may be missing at the end only if it
//! was seen ended first, and the history model lets an ended job vanish.
//!
//! GENFLEET_CHAOS_SECONDS sets how long faults are injected (default 20).
//! Run for 10 minutes or more it is the soak: it also samples memory, file
//! descriptors and threads of every replica process and of the test's own
//! (clients and workers), prints them per minute, and checks they stay flat.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::history::{self, Answer, Event, Model, Op};
use common::proxy::Proxy;
use common::replicas::free_port;
use common::*;
use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::job_service_client::JobServiceClient;
use pb::scheduler_message::Msg as Down;
use pb::worker_message::Msg as Up;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const REPLICAS: u64 = 3;
/// How long the replicas keep an ended job: short, so that jobs are
/// forgotten under the faults, yet many observer polls long.
const RETAIN_ENDED: &str = "5s";

/// Three replicas whose raft links each go through a proxy the test can cut.
struct Cluster {
    dir: tempfile::TempDir,
    ports: BTreeMap<u64, u16>,
    /// (from, to) -> the proxy `from` reaches `to` through.
    links: BTreeMap<(u64, u64), Proxy>,
    procs: BTreeMap<u64, Proc>,
}

impl Cluster {
    async fn start() -> Cluster {
        let ports: BTreeMap<u64, u16> = (1..=REPLICAS).map(|id| (id, free_port())).collect();
        let mut links = BTreeMap::new();
        for from in 1..=REPLICAS {
            for to in 1..=REPLICAS {
                if from != to {
                    let target: SocketAddr = format!("127.0.0.1:{}", ports[&to])
                        .parse()
                        .expect("address");
                    links.insert((from, to), Proxy::start(target).await);
                }
            }
        }
        let mut cluster = Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            ports,
            links,
            procs: BTreeMap::new(),
        };
        for id in 1..=REPLICAS {
            cluster.start_replica(id);
        }
        cluster
    }

    fn endpoint(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[&id])
    }

    fn endpoints(&self) -> Vec<String> {
        (1..=REPLICAS).map(|id| self.endpoint(id)).collect()
    }

    fn start_replica(&mut self, id: u64) {
        let peers: Vec<String> = (1..=REPLICAS)
            .map(|to| {
                let address = if to == id {
                    self.endpoint(id)
                } else {
                    format!("http://{}", self.links[&(id, to)].addr)
                };
                format!("{to}={address}")
            })
            .collect();
        let data = self.dir.path().join(format!("replica-{id}"));
        let listen = format!("127.0.0.1:{}", self.ports[&id]);
        let id_arg = id.to_string();
        let peers = peers.join(",");
        let args = [
            "--id",
            &id_arg,
            "--peers",
            &peers,
            "--worker-grace",
            "3s",
            "--snapshot-every",
            "40",
            "--raft-tick",
            "50ms",
            "--retain-ended-for",
            RETAIN_ENDED,
            "--retention-every",
            "1s",
        ];
        self.procs
            .insert(id, start_scheduler(&data, &listen, &args).proc);
    }

    /// (replica, its process id) of the replicas running now.
    fn pids(&self) -> Vec<(u64, u32)> {
        self.procs.iter().map(|(id, p)| (*id, p.pid())).collect()
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut proc) = self.procs.remove(&id) {
            proc.kill();
        }
    }

    /// Cuts `id` off from the other replicas, both ways.
    fn isolate(&self, id: u64, cut: bool) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                if cut {
                    proxy.block();
                } else {
                    proxy.unblock();
                }
            }
        }
    }

    async fn statuses(&self) -> BTreeMap<u64, pb::ReplicaStatus> {
        let mut out = BTreeMap::new();
        for id in self.procs.keys() {
            let Ok(channel) = Channel::from_shared(self.endpoint(*id))
                .expect("uri")
                .connect()
                .await
            else {
                continue;
            };
            let mut client = ClusterServiceClient::new(channel);
            let status = tokio::time::timeout(
                Duration::from_secs(2),
                client.status(pb::ReplicaStatusRequest {}),
            )
            .await;
            if let Ok(Ok(s)) = status {
                out.insert(*id, s.into_inner());
            }
        }
        out
    }

    async fn leader(&self) -> Option<u64> {
        self.statuses()
            .await
            .values()
            .find(|s| s.role == "leader")
            .map(|s| s.id)
    }
}

/// A microsecond clock shared by every recorder.
#[derive(Clone)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// What the clients did: history events keyed by request id until the job
/// id is known.
#[derive(Default)]
struct Recorder {
    events: Vec<(String, Event)>,
    known_jobs: Vec<String>,
    /// Request ids whose submit was acknowledged.
    acked: BTreeMap<String, String>,
    /// Jobs someone saw ended or cancelled: only these may be forgotten.
    seen_ended: std::collections::HashSet<String>,
}

fn answer_of(status: &tonic::Status) -> Answer {
    match status.code() {
        tonic::Code::NotFound => Answer::NotFound,
        tonic::Code::FailedPrecondition => Answer::AlreadyEnded,
        _ => Answer::Unknown,
    }
}

fn model_of(job: &pb::Job) -> Model {
    match job.state() {
        pb::JobState::Pending | pb::JobState::Running => Model::Live,
        pb::JobState::Cancelled => Model::Cancelled,
        _ => Model::Ended,
    }
}

async fn connect_any(endpoints: &[String], rng: &mut StdRng) -> Option<JobServiceClient<Channel>> {
    let address = &endpoints[rng.random_range(0..endpoints.len())];
    let channel = Channel::from_shared(address.clone())
        .ok()?
        .connect_timeout(Duration::from_millis(500));
    channel.connect().await.ok().map(JobServiceClient::new)
}

/// One client: submits, cancels and reads at random until `stop`.
async fn client_loop(
    seed: u64,
    endpoints: Vec<String>,
    clock: Clock,
    recorder: Arc<Mutex<Recorder>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0;
    while !*stop.borrow() {
        n += 1;
        let roll: f64 = rng.random();
        let known = recorder.lock().expect("lock").known_jobs.clone();
        if roll < 0.6 || known.is_empty() {
            let request_id = format!("c{seed}-{n}");
            let spec = pb::JobSpec {
                prompt: format!("chaos {request_id}"),
                frames: 1,
                width: 16,
                height: 16,
                steps: 1,
                model: "tiny".into(),
                ..Default::default()
            };
            let request = pb::SubmitRequest {
                spec: Some(spec),
                request_id: request_id.clone(),
            };
            let invoked = clock.now();
            // Retried with the same request id, as the CLI does.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut answer = None;
            while answer.is_none() && Instant::now() < deadline && !*stop.borrow() {
                let Some(mut c) = connect_any(&endpoints, &mut rng).await else {
                    continue;
                };
                let call =
                    tokio::time::timeout(Duration::from_secs(3), c.submit(request.clone())).await;
                if let Ok(Ok(reply)) = call {
                    answer = reply.into_inner().job.map(|j| j.id);
                }
            }
            let mut r = recorder.lock().expect("lock");
            let returned = answer.as_ref().map(|_| clock.now());
            let event = Event {
                job: String::new(),
                op: Op::Submit,
                answer: if answer.is_some() {
                    Answer::Submitted
                } else {
                    Answer::Unknown
                },
                invoked,
                returned,
            };
            if let Some(job) = answer {
                r.acked.insert(request_id.clone(), job.clone());
                r.known_jobs.push(job);
            }
            r.events.push((request_id, event));
        } else {
            let job = known[rng.random_range(0..known.len())].clone();
            let Some(mut c) = connect_any(&endpoints, &mut rng).await else {
                continue;
            };
            let invoked = clock.now();
            let (op, answer) = if roll < 0.8 {
                let call = tokio::time::timeout(
                    Duration::from_secs(3),
                    c.cancel(pb::CancelJobRequest { id: job.clone() }),
                )
                .await;
                (
                    Op::Cancel,
                    match call {
                        Ok(Ok(_)) => Answer::Cancelled,
                        Ok(Err(status)) => answer_of(&status),
                        Err(_) => Answer::Unknown,
                    },
                )
            } else {
                let call = tokio::time::timeout(
                    Duration::from_secs(3),
                    c.get(pb::GetJobRequest { id: job.clone() }),
                )
                .await;
                (
                    Op::Get,
                    match call {
                        Ok(Ok(reply)) => Answer::Saw(model_of(&reply.into_inner())),
                        Ok(Err(status)) => answer_of(&status),
                        Err(_) => Answer::Unknown,
                    },
                )
            };
            let returned = (answer != Answer::Unknown).then(|| clock.now());
            let mut r = recorder.lock().expect("lock");
            if matches!(
                answer,
                Answer::Cancelled
                    | Answer::AlreadyEnded
                    | Answer::Saw(Model::Cancelled | Model::Ended)
            ) {
                r.seen_ended.insert(job.clone());
            }
            r.events.push((
                job.clone(),
                Event {
                    job,
                    op,
                    answer,
                    invoked,
                    returned,
                },
            ));
        }
        let pause = rng.random_range(5..40);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Pages through the ended jobs again and again, noting each: the checks
/// then know that a job missing at the end had ended before retention
/// forgot it.
async fn observe_ended(
    endpoints: Vec<String>,
    recorder: Arc<Mutex<Recorder>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(7);
    let ended = [
        pb::JobState::Completed,
        pb::JobState::Failed,
        pb::JobState::Cancelled,
    ];
    while !*stop.borrow() {
        if let Some(mut c) = connect_any(&endpoints, &mut rng).await {
            let mut request = pb::ListJobsRequest {
                states: ended.iter().map(|s| *s as i32).collect(),
                page_size: 1000,
                ..Default::default()
            };
            loop {
                let call =
                    tokio::time::timeout(Duration::from_secs(3), c.list(request.clone())).await;
                let Ok(Ok(page)) = call else { break };
                let page = page.into_inner();
                let ids = page.jobs.into_iter().map(|j| j.id);
                recorder.lock().expect("lock").seen_ended.extend(ids);
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What a fake worker saw of one lease.
#[derive(Debug, Default, Clone)]
struct LeaseLog {
    done: Vec<(String, u64, String)>,
}

/// A worker in the test process: takes assignments, reports each job
/// finished after a short while, keeps unacknowledged results across
/// reconnects, and logs the `done` acknowledgements it gets.
async fn fake_worker(
    node: String,
    endpoints: Vec<String>,
    log: Arc<Mutex<LeaseLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let instance = format!("{node}-instance");
    let mut outbox: HashMap<String, pb::JobLease> = HashMap::new();
    let mut next = 0;
    let mut hint: Option<String> = None;
    while !*stop.borrow() {
        let address = hint.take().unwrap_or_else(|| {
            next += 1;
            endpoints[next % endpoints.len()].clone()
        });
        let Ok(channel) = Channel::from_shared(address)
            .expect("uri")
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut client = pb::worker_session_client::WorkerSessionClient::new(channel);
        let (tx, rx) = mpsc::channel(64);
        let register = pb::Register {
            node: node.clone(),
            instance: instance.clone(),
            devices: vec![pb::DeviceGroup {
                flavor: "cpu".into(),
                count: 2,
                memory_bytes: 0,
                free_memory_bytes: None,
                simulated: false,
            }],
            models: vec!["tiny".into()],
            running: outbox.values().cloned().collect(),
        };
        let _ = tx
            .send(pb::WorkerMessage {
                msg: Some(Up::Register(register)),
            })
            .await;
        let mut inbound = match client.session(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                hint = status
                    .metadata()
                    .get("genfleet-leader")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for lease in outbox.values() {
            let _ = tx.send(finished(lease)).await;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_millis(300));
        let (due_tx, mut due) = mpsc::unbounded_channel::<pb::JobLease>();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = heartbeat.tick() => {
                    if tx.send(pb::WorkerMessage { msg: Some(Up::Heartbeat(pb::Heartbeat {})) }).await.is_err() { break }
                }
                Some(lease) = due.recv() => {
                    outbox.insert(lease.job_id.clone(), lease.clone());
                    if tx.send(finished(&lease)).await.is_err() { break }
                }
                message = inbound.message() => match message {
                    Ok(Some(pb::SchedulerMessage { msg: Some(Down::Assignment(a)) })) => {
                        let lease = pb::JobLease { job_id: a.job_id.clone(), lease_epoch: a.lease_epoch };
                        let due_tx = due_tx.clone();
                        // The "work": a short pause.
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(30 + lease.lease_epoch % 100)).await;
                            let _ = due_tx.send(lease);
                        });
                    }
                    Ok(Some(pb::SchedulerMessage { msg: Some(Down::Done(lease)) })) => {
                        if outbox.get(&lease.job_id) == Some(&lease) {
                            outbox.remove(&lease.job_id);
                        }
                        log.lock().expect("lock").done.push((lease.job_id, lease.lease_epoch, node.clone()));
                    }
                    Ok(Some(pb::SchedulerMessage { msg: Some(Down::Stop(stop)) })) => {
                        if let Some(lease) = stop.lease {
                            if outbox.get(&lease.job_id) == Some(&lease) {
                                outbox.remove(&lease.job_id);
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(status) => {
                        hint = status.metadata().get("genfleet-leader").and_then(|v| v.to_str().ok()).map(String::from);
                        break;
                    }
                },
            }
        }
    }
}

fn finished(lease: &pb::JobLease) -> pb::WorkerMessage {
    pb::WorkerMessage {
        msg: Some(Up::Finished(pb::Finished {
            lease: Some(lease.clone()),
            artifacts: vec![pb::Artifact {
                kind: "video".into(),
                // In the job's own folder (the scheduler takes no other),
                // named by the lease that made it.
                uri: format!(
                    "file:///fake/{}/video-{}.mp4",
                    lease.job_id, lease.lease_epoch
                ),
                size_bytes: 1,
                content_type: "video/mp4".into(),
            }],
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_job_is_lost_or_doubled_under_crashes_and_partitions() {
    let seconds: u64 = std::env::var("GENFLEET_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut cluster = Cluster::start().await;
    within(60, "the three replicas elect a leader", async {
        while cluster.leader().await.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    let clock = Clock(Instant::now());
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let leases = Arc::new(Mutex::new(LeaseLog::default()));
    let (stop_tx, stop) = watch::channel(false);
    let endpoints = cluster.endpoints();
    let mut tasks = Vec::new();
    for seed in 1..=3 {
        tasks.push(tokio::spawn(client_loop(
            seed,
            endpoints.clone(),
            clock.clone(),
            recorder.clone(),
            stop.clone(),
        )));
    }
    // Watches for ended jobs until the final list is read: retention
    // may forget any job that ended before then.
    let (observer_stop_tx, observer_stop) = watch::channel(false);
    let observer = tokio::spawn(observe_ended(
        endpoints.clone(),
        recorder.clone(),
        observer_stop,
    ));
    for node in ["worker-a", "worker-b"] {
        tasks.push(tokio::spawn(fake_worker(
            node.into(),
            endpoints.clone(),
            leases.clone(),
            stop.clone(),
        )));
    }

    // The fault schedule: each round breaks something, then repairs it.
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(2026);
    let mut faults = Vec::new();
    let mut usage = Usage::default();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let acked = recorder.lock().map_or(0, |r| r.acked.len());
        usage.sample(started.elapsed(), &cluster.pids(), acked);
        round += 1;
        match round % 3 {
            1 => {
                if let Some(leader) = cluster.leader().await {
                    cluster.kill(leader);
                    faults.push(format!("kill -9 leader {leader}"));
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    cluster.start_replica(leader);
                }
            }
            2 => {
                let victim = rng.random_range(1..=REPLICAS);
                cluster.isolate(victim, true);
                faults.push(format!("cut off replica {victim}"));
                tokio::time::sleep(Duration::from_millis(2000)).await;
                cluster.isolate(victim, false);
            }
            _ => {
                let victim = rng.random_range(1..=REPLICAS);
                cluster.kill(victim);
                faults.push(format!("kill -9 replica {victim}"));
                tokio::time::sleep(Duration::from_millis(800)).await;
                cluster.start_replica(victim);
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Let the last work finish, then stop the load.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = within(30, "client and worker tasks stop", task).await;
    }

    // Every replica converges on the same state.
    let deadline = Instant::now() + Duration::from_secs(60);
    let converged = loop {
        let statuses = cluster.statuses().await;
        let hashes: std::collections::BTreeSet<&String> =
            statuses.values().map(|s| &s.state_hash).collect();
        let applied: std::collections::BTreeSet<u64> =
            statuses.values().map(|s| s.applied).collect();
        if statuses.len() == REPLICAS as usize && hashes.len() == 1 && applied.len() == 1 {
            break statuses;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge within 60 s after the faults ({}):\n{statuses:#?}",
            faults.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut c = client(&cluster.endpoint(1)).await;
    let jobs = list(&mut c).await;
    let _ = observer_stop_tx.send(true);
    let _ = within(30, "the observer stops", observer).await;
    let leases = leases.lock().expect("lock");
    let mut recorder = recorder.lock().expect("lock");
    let finished = leases.done.iter().map(|(job, _, _)| job.clone());
    recorder.seen_ended.extend(finished);

    // 1. Every acknowledged submission exists exactly once, or ended and
    //    was forgotten by retention.
    let mut by_request: BTreeMap<&str, Vec<&pb::Job>> = BTreeMap::new();
    for job in &jobs {
        by_request
            .entry(job.request_id.as_str())
            .or_default()
            .push(job);
    }
    let mut forgotten = 0;
    for (request_id, job_id) in &recorder.acked {
        let found = by_request.get(request_id.as_str()).map_or(0, Vec::len);
        if found == 0 && recorder.seen_ended.contains(job_id) {
            forgotten += 1;
            continue;
        }
        assert_eq!(
            found, 1,
            "acknowledged submission {request_id} ({job_id}) exists {found} times"
        );
        assert_eq!(&by_request[request_id.as_str()][0].id, job_id);
    }
    assert!(
        by_request.values().all(|v| v.len() == 1),
        "some request id made two jobs"
    );

    // 2. One finishing lease per job, and it is the recorded one.
    let mut done_by_job: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for (job, epoch, node) in &leases.done {
        done_by_job
            .entry(job.as_str())
            .or_default()
            .push((*epoch, node.as_str()));
    }
    for (job, dones) in &done_by_job {
        let epochs: std::collections::BTreeSet<u64> = dones.iter().map(|(e, _)| *e).collect();
        assert_eq!(
            epochs.len(),
            1,
            "job {job} was acknowledged finished under several leases: {dones:?}"
        );
    }
    for job in jobs.iter().filter(|j| j.state() == pb::JobState::Completed) {
        let expected = format!("file:///fake/{}/video-{}.mp4", job.id, job.lease_epoch);
        assert_eq!(
            job.artifacts.first().map(|a| a.uri.as_str()),
            Some(expected.as_str()),
            "job {} kept a result from another lease",
            job.id
        );
    }

    // 3. The history is linearizable.
    let mut job_of_request: BTreeMap<&str, &str> = recorder
        .acked
        .iter()
        .map(|(request, job)| (request.as_str(), job.as_str()))
        .collect();
    job_of_request.extend(jobs.iter().map(|j| (j.request_id.as_str(), j.id.as_str())));
    let events: Vec<Event> = recorder
        .events
        .iter()
        .filter_map(|(key, event)| {
            let job = match event.op {
                Op::Submit => job_of_request.get(key.as_str())?.to_string(),
                _ => key.clone(),
            };
            Some(Event {
                job,
                ..event.clone()
            })
        })
        .collect();
    if let Err(e) = history::check_forgetting(&events) {
        panic!("{e}");
    }

    let unknown = recorder
        .events
        .iter()
        .filter(|(_, e)| e.answer == Answer::Unknown)
        .count();
    let completed = jobs
        .iter()
        .filter(|j| j.state() == pb::JobState::Completed)
        .count();
    let leader = converged
        .values()
        .find(|s| s.role == "leader")
        .map(|s| s.id);
    println!(
        "chaos: {} faults ({}), {} operations ({} acknowledged submits, {} unanswered), {} jobs at the end ({} completed), {forgotten} acknowledged jobs ended and forgotten, leader {:?}, applied {}",
        faults.len(),
        faults.join("; "),
        recorder.events.len(),
        recorder.acked.len(),
        unknown,
        jobs.len(),
        completed,
        leader,
        converged.values().next().map_or(0, |s| s.applied)
    );
    assert!(
        recorder.acked.len() >= 20,
        "the clients got work through: {} acknowledged",
        recorder.acked.len()
    );
    assert!(completed > 0, "the workers completed jobs");
    assert!(
        forgotten > 0,
        "retention forgot no acknowledged job in {seconds} s"
    );
    usage.report();
    if seconds >= 300 {
        usage.assert_flat();
    }
}

/// How much a replica's memory may grow over a soak with retention on.
const REPLICA_MEMORY_SLACK_KIB: u64 = 32 * 1024;

/// One look at a process: resident memory (KiB), open files, threads.
#[derive(Debug, Clone, Copy, Default)]
struct ProcessUsage {
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

fn process_usage(pid: &str) -> Option<ProcessUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(ProcessUsage {
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
    })
}

/// The largest figures seen per minute, for the replicas (whichever
/// process each was at the time) and for the test process, with the jobs
/// acknowledged by then (the state every replica holds grows with them).
#[derive(Default)]
struct Usage {
    replicas: BTreeMap<u64, ProcessUsage>,
    test: BTreeMap<u64, ProcessUsage>,
    jobs: BTreeMap<u64, usize>,
}

impl Usage {
    fn sample(&mut self, at: Duration, pids: &[(u64, u32)], jobs: usize) {
        let minute = at.as_secs() / 60;
        self.jobs.insert(minute, jobs);
        let max = |into: &mut ProcessUsage, u: ProcessUsage| {
            into.rss_kib = into.rss_kib.max(u.rss_kib);
            into.fds = into.fds.max(u.fds);
            into.threads = into.threads.max(u.threads);
        };
        for (_, pid) in pids {
            if let Some(u) = process_usage(&pid.to_string()) {
                max(self.replicas.entry(minute).or_default(), u);
            }
        }
        if let Some(u) = process_usage("self") {
            max(self.test.entry(minute).or_default(), u);
        }
    }

    fn report(&self) {
        println!(
            "minute  replica: max RSS MiB, fds, threads   test process: RSS MiB, fds, threads"
        );
        for (minute, r) in &self.replicas {
            let t = self.test.get(minute).copied().unwrap_or_default();
            println!(
                "{minute:>6}  {:>8.1} {:>5} {:>5}   {:>8.1} {:>5} {:>5}",
                r.rss_kib as f64 / 1024.0,
                r.fds,
                r.threads,
                t.rss_kib as f64 / 1024.0,
                t.fds,
                t.threads
            );
        }
    }

    /// The last full minute against the first. Threads and open files stay
    /// flat everywhere. Retention keeps a replica's state bounded, so its
    /// memory may grow by at most `REPLICA_MEMORY_SLACK_KIB` (allocator
    /// and raft log noise); the test process keeps the whole history for
    /// the checker, so its memory is not held to anything.
    fn assert_flat(&self) {
        for (what, per_minute) in [("replicas", &self.replicas), ("test process", &self.test)] {
            let minutes: Vec<&ProcessUsage> = per_minute.values().collect();
            assert!(minutes.len() >= 3, "{what}: too few minutes sampled");
            let (first, last) = (minutes[0], minutes[minutes.len() - 2]);
            assert!(
                last.threads <= first.threads + 4,
                "{what}: threads grew from {} to {}",
                first.threads,
                last.threads
            );
            assert!(
                last.fds <= first.fds + 32,
                "{what}: open files grew from {} to {}",
                first.fds,
                last.fds
            );
        }
        let replicas: Vec<&ProcessUsage> = self.replicas.values().collect();
        let (first, last) = (replicas[0], replicas[replicas.len() - 2]);
        assert!(
            last.rss_kib <= first.rss_kib + REPLICA_MEMORY_SLACK_KIB,
            "replicas: memory grew from {} to {} KiB",
            first.rss_kib,
            last.rss_kib
        );
    }
}

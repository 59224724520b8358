//! Committed writes per second through three replicas on loopback, fsync
//! on, many concurrent clients: genfleet submissions against etcd puts of
//! the same size at the same concurrency, in the same run. The bench starts
//! a 3-node etcd cluster from Debian's etcd-server (and installs it with
//! apt-get when it is missing and the bench runs as root).
//!
//! `cargo bench --bench raft_throughput`
//! GENFLEET_BENCH_CLIENTS (default 64), GENFLEET_BENCH_SECONDS (default 10) and
//! GENFLEET_BENCH_ROUNDS (default 3; the RESULT lines are medians over rounds).

#[path = "../tests/suite/common/mod.rs"]
#[allow(dead_code)] // A bench uses a few of the integration tests' helpers.
mod common;

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::replicas::{free_port, Replicas};
use common::small_spec;
use genfleet_proto as pb;
use pb::job_service_client::JobServiceClient;
use prost::Message as _;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// HTTP/2 connections the clients share.
const CHANNELS: usize = 8;

struct Stats {
    ok: usize,
    errors: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        self.latencies_ms[((self.latencies_ms.len() as f64 - 1.0) * q).round() as usize]
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {} committed in {:.1} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            self.ok,
            self.seconds,
            self.rate(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.errors
        )
    }
}

/// Runs `clients` loops of `call(client, n)` for `duration`.
async fn load<F, Fut>(clients: usize, duration: Duration, call: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let results = Arc::new(Mutex::new((0usize, 0usize, Vec::new())));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (call, results) = (call.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let (mut ok, mut errors, mut latencies) = (0, 0, Vec::new());
            while Instant::now() < deadline {
                n += 1;
                let t = Instant::now();
                if call(client, n).await {
                    ok += 1;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors += 1;
                }
            }
            let mut r = results.lock().expect("lock");
            r.0 += ok;
            r.1 += errors;
            r.2.extend(latencies);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (ok, errors, mut latencies_ms) = std::mem::take(&mut *results.lock().expect("lock"));
    latencies_ms.sort_by(f64::total_cmp);
    Stats {
        ok,
        errors,
        seconds,
        latencies_ms,
    }
}

async fn channels(endpoint: &str) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..CHANNELS {
        let channel = Channel::from_shared(endpoint.to_string())
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        out.push(channel);
    }
    out
}

async fn bench_genfleet(clients: usize, duration: Duration) -> (Stats, usize) {
    let replicas = Replicas::new(3, &[]);
    replicas.converged(&[1, 2, 3]).await;
    let leader = replicas.leader().await.expect("a leader");
    let pool = channels(&replicas.endpoint(leader)).await;
    let sample = pb::SubmitRequest {
        spec: Some(small_spec("throughput", 0)),
        request_id: "bench-0000000-000000".into(),
    };
    let size = sample.encoded_len();
    let stats = load(clients, duration, move |client, n| {
        let mut c = JobServiceClient::new(pool[client % pool.len()].clone());
        let request = pb::SubmitRequest {
            spec: Some(small_spec("throughput", n as u64)),
            request_id: format!("bench-{client:07}-{n:06}"),
        };
        async move { c.submit(request).await.is_ok() }
    })
    .await;
    drop(replicas);
    (stats, size)
}

// The two etcd v3 messages the bench needs, by their field numbers in
// etcd's api/etcdserverpb/rpc.proto. Fields not listed are skipped on decode.
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct ResponseHeader {
    #[prost(uint64, tag = "2")]
    member_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(uint64, tag = "4")]
    leader: u64,
}

async fn unary<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Req,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The etcd binary, installed from Debian's etcd-server if missing.
fn etcd_binary() -> Option<String> {
    let found = |p: &str| std::path::Path::new(p).exists();
    for path in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if found(path) {
            return Some(path.into());
        }
    }
    println!("etcd not found; installing Debian's etcd-server");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "etcd-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (installed && found("/usr/bin/etcd")).then(|| "/usr/bin/etcd".into())
}

/// The etcd members and their data directory, removed after them.
struct Etcd {
    members: Vec<Child>,
    _data: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn bench_etcd(
    binary: &str,
    clients: usize,
    duration: Duration,
    value_size: usize,
) -> Option<(Stats, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("e{i}=http://127.0.0.1:{}", peer_ports[i]))
        .collect();
    let mut children = Vec::new();
    for i in 0..3 {
        let client = format!("http://127.0.0.1:{}", client_ports[i]);
        let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
        let child = Command::new(binary)
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(dir.path().join(format!("e{i}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster.join(","),
                "--initial-cluster-state",
                "new",
            ])
            .args([
                "--initial-cluster-token",
                "genfleet-bench",
                "--logger",
                "zap",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        children.push(child);
    }
    let etcd = Etcd {
        members: children,
        _data: dir,
    };
    // Ready when a member reports itself leader.
    let started = Instant::now();
    let leader_endpoint = loop {
        let mut found = None;
        for port in &client_ports {
            let endpoint = format!("http://127.0.0.1:{port}");
            let Ok(channel) = Channel::from_shared(endpoint.clone())
                .expect("uri")
                .connect()
                .await
            else {
                continue;
            };
            if let Ok(s) = unary::<_, StatusResponse>(
                channel,
                "/etcdserverpb.Maintenance/Status",
                StatusRequest {},
            )
            .await
            {
                if s.leader != 0 && s.header.map(|h| h.member_id) == Some(s.leader) {
                    found = Some(endpoint);
                }
            }
        }
        if let Some(endpoint) = found {
            break endpoint;
        }
        if started.elapsed() > Duration::from_secs(30) {
            println!("etcd did not elect a leader within 30 s");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let version = Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(str::to_string))
        .unwrap_or_default();
    let pool = channels(&leader_endpoint).await;
    let value = vec![b'v'; value_size];
    let stats = load(clients, duration, move |client, n| {
        let channel = pool[client % pool.len()].clone();
        let request = PutRequest {
            key: format!("bench-{client:07}-{n:06}").into_bytes(),
            value: value.clone(),
        };
        async move {
            unary::<_, PutResponse>(channel, "/etcdserverpb.KV/Put", request)
                .await
                .is_ok()
        }
    })
    .await;
    drop(etcd);
    Some((stats, version))
}

/// The median of per-round figures (the upper middle for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let clients = env("GENFLEET_BENCH_CLIENTS", 64) as usize;
    let duration = Duration::from_secs(env("GENFLEET_BENCH_SECONDS", 10));
    let rounds = env("GENFLEET_BENCH_ROUNDS", 3).max(1) as usize;
    println!(
        "3 replicas on loopback, fsync on, {clients} concurrent clients, \
         {rounds} alternating rounds of {} s each, fresh clusters every round",
        duration.as_secs()
    );
    let etcd_binary = etcd_binary();
    if etcd_binary.is_none() {
        println!("etcd is not available (install Debian's etcd-server); no comparison");
    }
    // Rounds alternate so that a slow spell of the machine hits both sides.
    let (mut genfleet, mut etcd) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (stats, size) = bench_genfleet(clients, duration).await;
        println!("round {round}: {}", stats.line("genfleet submit"));
        genfleet.push(stats);
        let Some(binary) = &etcd_binary else { continue };
        if let Some((stats, version)) =
            bench_etcd(binary, clients, duration, size.saturating_sub(20)).await
        {
            let name = format!("etcd put ({version}, {size} bytes: key and value)");
            println!("round {round}: {}", stats.line(&name));
            etcd.push(stats);
        }
    }
    let rate = |all: &[Stats]| median(all.iter().map(Stats::rate).collect());
    let p99 = |all: &[Stats]| median(all.iter().map(|s| s.quantile(0.99)).collect());
    println!("medians over the rounds:");
    println!(
        "RESULT raft_throughput_genfleet {:.0} submissions/s",
        rate(&genfleet)
    );
    println!(
        "RESULT raft_throughput_genfleet_p99 {:.2} ms",
        p99(&genfleet)
    );
    if !etcd.is_empty() {
        println!("RESULT raft_throughput_etcd {:.0} puts/s", rate(&etcd));
        println!("RESULT raft_throughput_etcd_p99 {:.2} ms", p99(&etcd));
        println!(
            "RESULT raft_throughput_ratio {:.2} x",
            rate(&genfleet) / rate(&etcd)
        );
    }
}

//! Shared by the integration tests: real `genfleet` processes on loopback,
//! a gRPC client, and waits that fail with a message naming the likely bug
//! instead of hanging.

pub mod history;
pub mod prometheus;
pub mod proxy;
pub mod replay;
pub mod replicas;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use genfleet_proto as pb;
use pb::job_service_client::JobServiceClient;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_genfleet");

/// Awaits `f`, failing the test with `what` if it takes longer than `secs`.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s: {what}"),
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process as `kill -9` would and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a graceful stop, as Kubernetes sends) and waits for
    /// the process to exit, at most `secs`; returns its exit status.
    pub fn terminate(&mut self, secs: u64) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let (tx, rx) = mpsc::channel();
        let waited = std::thread::scope(|scope| {
            let child = &mut self.child;
            scope.spawn(move || {
                let _ = tx.send(child.wait());
            });
            let status = rx.recv_timeout(Duration::from_secs(secs));
            if status.is_err() {
                // Still running: kill it so the waiting thread returns.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            status
        });
        match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("waiting for {}: {e}", self.name),
            Err(_) => panic!("{} did not exit within {secs}s of SIGTERM", self.name),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `genfleet <args>` and waits for the stdout line containing
/// `ready_marker`; returns the process and that line. Its log goes to the
/// test's stderr at the level GENFLEET_TEST_LOG gives (default warn).
pub fn spawn_ready(name: &str, args: &[&str], ready_marker: &str) -> (Proc, String) {
    spawn_ready_with_env(name, args, &[], ready_marker)
}

/// [`spawn_ready`] with extra environment variables.
pub fn spawn_ready_with_env(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    ready_marker: &str,
) -> (Proc, String) {
    let (proc, mut lines) = spawn_until(name, args, env, ready_marker);
    let ready = lines.pop().unwrap_or_default();
    (proc, ready)
}

/// [`spawn_ready_with_env`], returning every stdout line up to and
/// including the one containing `ready_marker`.
pub fn spawn_until(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    ready_marker: &str,
) -> (Proc, Vec<String>) {
    let mut command = Command::new(BIN);
    without_aws_settings(&mut command);
    let mut child = command
        .args(args)
        // A developer's kubeconfig must not switch the integration on;
        // a test that wants it passes --kubernetes on.
        .env("GENFLEET_KUBERNETES", "off")
        .envs(env.iter().copied())
        .env(
            "RUST_LOG",
            std::env::var("GENFLEET_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN} for {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let proc = Proc {
        child,
        name: name.to_string(),
    };
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let ready = line.contains(ready_marker);
                lines.push(line);
                if ready {
                    return (proc, lines);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{name} exited before printing {ready_marker:?}; see its log above")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} did not print {ready_marker:?} within 60s; see its log above")
            }
        }
    }
}

/// Drops the AWS_* settings a developer's shell may hold (a session token,
/// an S3 endpoint), so that tests configure any S3 store themselves.
pub fn without_aws_settings(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
}

/// Runs the CLI to its end; returns (success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run genfleet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scheduler process and its addresses.
pub struct SchedulerProc {
    pub proc: Proc,
    pub endpoint: String,
    /// `http://.../metrics` if started with `--metrics-listen`.
    pub metrics: Option<String>,
    /// `http(s)://.../v1` if started with `--api-listen`.
    pub api: Option<String>,
}

/// The value of `key=` in a ready line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .map(str::to_string)
}

/// Starts a scheduler on `listen` (`127.0.0.1:0` for any free port).
pub fn start_scheduler(data_dir: &Path, listen: &str, extra: &[&str]) -> SchedulerProc {
    let dir = data_dir.to_string_lossy().to_string();
    let mut args = vec!["scheduler", "--data-dir", &dir, "--listen", listen];
    args.extend_from_slice(extra);
    let (proc, line) = spawn_ready("scheduler", &args, "ready: grpc=");
    let endpoint = field(&line, "grpc=").unwrap_or_else(|| panic!("no grpc= address in {line:?}"));
    SchedulerProc {
        proc,
        endpoint,
        metrics: field(&line, "metrics="),
        api: field(&line, "api="),
    }
}

/// A scheduler on a free port with its data, the models a worker serves
/// and an artifact store, all in one temporary directory.
pub struct Local {
    // Fields drop in order: the scheduler stops before its directory goes.
    pub scheduler: SchedulerProc,
    /// The scheduler's gRPC address.
    pub endpoint: String,
    /// The models [`init_model`] made, for workers' `--models`.
    pub models: PathBuf,
    /// Where workers write, for their `--artifacts`.
    pub artifacts: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Local {
    /// Makes the models, then starts the scheduler with `extra` arguments.
    pub fn start(extra: &[&str]) -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let models = dir.path().join("models");
        init_model(&models);
        let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", extra);
        Local {
            endpoint: scheduler.endpoint.clone(),
            scheduler,
            models,
            artifacts: dir.path().join("artifacts"),
            dir,
        }
    }
}

/// Asserts that the worker whose metrics are at `metrics_url` resumed
/// exactly one job from a checkpoint another worker saved.
pub fn assert_resumed_one_checkpoint(metrics_url: Option<&str>) {
    let text = http_get(metrics_url.expect("the worker's metrics url"));
    assert_eq!(
        metric(
            &text,
            "genfleet_worker_checkpoint_loads_total",
            &[("result", "resumed")]
        ),
        Some(1.0),
        "the worker resumed from the other node's checkpoint: {text}"
    );
}

/// Applies the queues of YAML `text` with `genfleet queue apply -f`
/// (the file is written to `dir`).
pub fn apply_queues(endpoint: &str, dir: &Path, text: &str) {
    let file = dir.join("queues.yaml");
    std::fs::write(&file, text).expect("write the queue file");
    let file = file.to_string_lossy().to_string();
    let (ok, _, err) = cli(&["queue", "apply", "-f", &file, "--scheduler", endpoint]);
    assert!(ok, "queue apply failed: {err}");
}

/// Creates the models a worker serves under `models` with the CLI: the
/// trained `world` (jobs that name no model) and the seeded `tiny`.
pub fn init_model(models: &Path) {
    let status = Command::new(BIN)
        .args(["model", "init", "--preset", "world,tiny", "--dir"])
        .arg(models)
        .stdout(Stdio::null())
        .status()
        .expect("run genfleet model init");
    assert!(status.success(), "genfleet model init failed");
}

/// Starts a worker for the scheduler at `endpoint`.
pub fn start_worker(endpoint: &str, node: &str, models: &Path, artifacts: &Path) -> Proc {
    start_worker_with(endpoint, node, models, artifacts, &[]).0
}

/// Starts a worker with extra arguments; returns it and its `metrics=` URL, if any.
pub fn start_worker_with(
    endpoint: &str,
    node: &str,
    models: &Path,
    artifacts: &Path,
    extra: &[&str],
) -> (Proc, Option<String>) {
    let models = models.to_string_lossy().to_string();
    let artifacts = artifacts.to_string_lossy().to_string();
    let mut args = vec![
        "worker",
        "--scheduler",
        endpoint,
        "--node",
        node,
        "--models",
        &models,
        "--artifacts",
        &artifacts,
    ];
    args.extend_from_slice(extra);
    let (proc, line) = spawn_ready("worker", &args, "genfleet worker ready");
    (proc, field(&line, "metrics="))
}

/// Runs `command` with `input` on its stdin; returns its exit status, its
/// stdout then stderr, and whether it read all of `input` (a tool may
/// answer, and exit, before it has).
pub fn pipe(command: &mut Command, input: &str) -> (ExitStatus, String, std::io::Result<()>) {
    use std::io::Write;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_string();
    // Written from another thread: the tool may fill its stdout pipe
    // before it has read all of its input.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let written = writer.join().expect("the writer thread");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, output, written)
}

/// The body of an HTTP GET of `url` (`http://host:port/path`), which must
/// answer 200.
pub fn http_get(url: &str) -> String {
    let (status, body) = http_response(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// The status code and body of an HTTP GET of `url`, over a plain socket:
/// enough for /metrics and the probes without an HTTP client dependency.
pub fn http_response(url: &str) -> (u16, String) {
    http_request("GET", url, &[], "")
}

/// The status code and body of an HTTP/1.0 request with these extra
/// headers and body (Content-Length is added when there is a body).
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, body) = http_request_bytes(method, url, headers, body);
    let body = String::from_utf8(body)
        .unwrap_or_else(|e| panic!("{method} {url}: the body is not text: {e}"));
    (status, body)
}

/// [`http_request`] for a body that need not be text.
pub fn http_request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    if !body.is_empty() {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    write!(stream, "{head}\r\n{body}").expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {url}: not an HTTP response"));
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {url}: no status code in {head:?}"));
    (status, response[split + 4..].to_vec())
}

/// A job client for `endpoint` if it takes a connection within 200 ms (a
/// stopped replica refuses at once): for loops that go on to the next one.
#[allow(dead_code)] // benches/failover.rs, benches/rolling_restart.rs
pub async fn quick_client(endpoint: &str) -> Option<JobServiceClient<Channel>> {
    let channel = Channel::from_shared(endpoint.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
        .ok()?;
    Some(JobServiceClient::new(channel))
}

/// A channel to the scheduler at `endpoint` (which is listening already:
/// it printed its ready line after binding), for any of its services.
pub async fn channel(endpoint: &str) -> Channel {
    let channel = Channel::from_shared(endpoint.to_string()).expect("valid endpoint");
    within(30, "connecting to a listening scheduler", channel.connect())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {endpoint}: {e}"))
}

/// A job client of the scheduler at `endpoint`, listening already.
pub async fn client(endpoint: &str) -> JobServiceClient<Channel> {
    JobServiceClient::new(channel(endpoint).await)
}

/// A small, quick job.
pub fn small_spec(prompt: &str, seed: u64) -> pb::JobSpec {
    pb::JobSpec {
        prompt: prompt.into(),
        frames: 9,
        width: 64,
        height: 48,
        steps: 4,
        seed,
        guidance: 4.0,
        fps: 6,
        model: "tiny".into(),
        ..Default::default()
    }
}

/// A CPU job of 160 steps (a few seconds here): long enough that a
/// preemption, a drain or a failover decided while it runs reaches it
/// before its last step.
pub fn long_spec(prompt: &str, seed: u64) -> pb::JobSpec {
    pb::JobSpec {
        frames: 9,
        width: 128,
        height: 96,
        steps: 160,
        ..small_spec(prompt, seed)
    }
}

pub async fn submit(client: &mut JobServiceClient<Channel>, spec: pb::JobSpec) -> pb::Job {
    within(
        30,
        "submit should be answered once the entry is applied",
        client.submit(pb::SubmitRequest {
            spec: Some(spec),
            request_id: String::new(),
        }),
    )
    .await
    .expect("submit accepted")
    .into_inner()
    .job
    .expect("submit returns the job")
}

/// Follows a job's watch stream until it ends; returns every state seen.
pub async fn watch_to_end(
    client: &mut JobServiceClient<Channel>,
    id: &str,
    secs: u64,
) -> (pb::Job, Vec<pb::JobState>) {
    // The last event seen, to say where the job was stuck on a timeout.
    let last = std::sync::Mutex::new(None::<pb::Job>);
    let watched = tokio::time::timeout(Duration::from_secs(secs), async {
        let mut stream = client
            .watch(pb::WatchJobRequest { id: id.to_string() })
            .await
            .expect("watch accepted")
            .into_inner();
        let mut states = Vec::new();
        while let Some(event) = stream.message().await.expect("watch stream") {
            let job = event.job.expect("event has a job");
            if states.last() != Some(&job.state()) {
                states.push(job.state());
            }
            if job.state().is_terminal() {
                return (job, states);
            }
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        }
        panic!("the watch of {id} ended before the job did; states seen: {states:?}");
    })
    .await;
    watched.unwrap_or_else(|_| {
        let last = last.lock().unwrap_or_else(|e| e.into_inner()).take();
        panic!("timed out after {secs}s: job {id} should end (is a worker connected and running it?); last seen: {last:?}")
    })
}

/// Follows `id`'s watch stream until `done` holds for the job.
pub async fn watch_until(
    jobs: &mut JobServiceClient<Channel>,
    id: &str,
    what: &str,
    done: impl Fn(&pb::Job) -> bool,
) -> pb::Job {
    // The last event seen, to say where the job was on a timeout.
    let last = std::sync::Mutex::new(None::<pb::Job>);
    let watched = tokio::time::timeout(Duration::from_secs(120), async {
        let mut stream = jobs
            .watch(pb::WatchJobRequest { id: id.into() })
            .await
            .expect("watch accepted")
            .into_inner();
        while let Some(event) = stream.message().await.expect("watch stream") {
            let job = event.job.expect("event has a job");
            if done(&job) {
                return job;
            }
            assert!(
                !job.state().is_terminal(),
                "{id} ended before: {what}: {job:?}"
            );
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        }
        panic!("the watch of {id} ended before: {what}");
    })
    .await;
    watched.unwrap_or_else(|_| {
        let last = last.lock().unwrap_or_else(|e| e.into_inner()).take();
        panic!("timed out after 120s: {what}; last seen of {id}: {last:?}")
    })
}

/// The job as the scheduler has it now.
pub async fn get_job(client: &mut JobServiceClient<Channel>, id: &str) -> pb::Job {
    within(
        30,
        "get a job",
        client.get(pb::GetJobRequest { id: id.into() }),
    )
    .await
    .expect("get")
    .into_inner()
}

/// Every job, page by page.
pub async fn list(client: &mut JobServiceClient<Channel>) -> Vec<pb::Job> {
    let mut jobs = Vec::new();
    let mut request = pb::ListJobsRequest::default();
    loop {
        let page = within(30, "list jobs", client.list(request.clone()))
            .await
            .expect("list")
            .into_inner();
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            return jobs;
        }
        request.page_token = page.next_page_token;
    }
}

/// The local path of a `file://` artifact of `kind`.
pub fn artifact_path(job: &pb::Job, kind: &str) -> PathBuf {
    let artifact = job
        .artifacts
        .iter()
        .find(|a| a.kind == kind)
        .unwrap_or_else(|| panic!("job {} has no {kind} artifact: {:?}", job.id, job.artifacts));
    PathBuf::from(
        artifact
            .uri
            .strip_prefix("file://")
            .expect("a local artifact"),
    )
}

/// Checks an MP4 file: H.264, `frames` frames of `width`x`height` at `fps`.
/// Also runs ffprobe when it is installed, and requires it when
/// GENFLEET_REQUIRE_FFPROBE is set (the README's test command sets it).
pub fn check_mp4(path: &Path, frames: u32, width: u32, height: u32, fps: u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let size = bytes.len() as u64;
    let reader =
        mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), size).expect("a readable MP4");
    let track = reader.tracks().get(&1).expect("a video track");
    assert_eq!(
        track.media_type().expect("media type"),
        mp4::MediaType::H264
    );
    assert_eq!(
        (u32::from(track.width()), u32::from(track.height())),
        (width, height)
    );
    assert_eq!(track.sample_count(), frames);
    assert!((track.frame_rate() - f64::from(fps)).abs() < 1e-6);

    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,r_frame_rate",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(path)
        .output();
    match probe {
        Ok(out) => {
            assert!(
                out.status.success(),
                "ffprobe rejected {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            for expected in [
                "codec_name=h264".to_string(),
                format!("width={width}"),
                format!("height={height}"),
                format!("nb_read_frames={frames}"),
                format!("r_frame_rate={fps}/1"),
            ] {
                assert!(
                    text.lines().any(|l| l == expected),
                    "ffprobe of {} lacks {expected}:\n{text}",
                    path.display()
                );
            }
        }
        Err(e) if std::env::var_os("GENFLEET_REQUIRE_FFPROBE").is_some() => {
            panic!("ffprobe is required (GENFLEET_REQUIRE_FFPROBE) but cannot run: {e}")
        }
        Err(_) => eprintln!(
            "note: ffprobe not installed; checked {} with the mp4 crate only",
            path.display()
        ),
    }
}

/// Checks that a file is a PNG of the given size.
pub fn check_png(path: &Path, width: u32, height: u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a decodable PNG");
    assert_eq!((reader.info().width, reader.info().height), (width, height));
}

/// The value of series `name` whose labels include all of `labels`, in
/// Prometheus text exposition format.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = labels.iter().all(|(k, v)| {
                series_labels
                    .split(',')
                    .any(|kv| kv == format!("{k}=\"{v}\""))
            });
            (series_name == name && wanted)
                .then(|| value.parse().ok())
                .flatten()
        })
}

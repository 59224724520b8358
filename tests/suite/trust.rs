//! Every port proves who is calling (docs/security.md), tried as an
//! attacker on loopback against a scheduler process with keys and a cluster
//! secret: with no credential every gRPC service and the REST API refuse;
//! raft takes messages only from a member, as that member; a worker
//! registers only the nodes its key names and reports only on its own
//! node's jobs, with files in their own job's folder; a 200 MiB message
//! without a credential leaves the scheduler's memory flat.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use genfleet_proto as pb;
use genfleet_scheduler::auth::cluster_secret::ClusterSecret;
use genfleet_scheduler::auth::NodePattern;
use pb::worker_message::Msg as Up;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A scheduler with an admin key, a cluster secret and the REST API.
struct Keyed {
    dir: tempfile::TempDir,
    scheduler: SchedulerProc,
    admin: String,
    secret: ClusterSecret,
}

impl Keyed {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets");
        let (ok, _, err) = cli(&["secrets", "init", "--dir", &text(&secrets)]);
        assert!(ok, "secrets init: {err}");
        let admin = "a".repeat(8) + &ClusterSecret::generate();
        let admin_file = dir.path().join("admin-key");
        std::fs::write(&admin_file, &admin).expect("write the admin key");
        let secret_file = secrets.join("cluster-secret");
        let secret = ClusterSecret::load(&secret_file).expect("the cluster secret");
        let artifacts = dir.path().join("artifacts");
        let scheduler = start_scheduler(
            &dir.path().join("scheduler"),
            "127.0.0.1:0",
            &[
                "--admin-key-file",
                &text(&admin_file),
                "--cluster-secret-file",
                &text(&secret_file),
                "--api-listen",
                "127.0.0.1:0",
                "--artifacts",
                &text(&artifacts),
            ],
        );
        Self {
            dir,
            scheduler,
            admin,
            secret,
        }
    }

    async fn channel(&self) -> Channel {
        common::channel(&self.scheduler.endpoint).await
    }

    fn worker_key(&self, nodes: &str) -> String {
        self.secret
            .worker_key(&NodePattern::parse(nodes).expect("a node pattern"))
    }

    /// The store root workers must write under, as the scheduler has it.
    fn store_root(&self) -> String {
        let dir = std::fs::canonicalize(self.dir.path().join("artifacts")).expect("artifacts");
        format!("file://{}", dir.display())
    }
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `message` as a request carrying `key` as its bearer credential.
fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().expect("an ASCII key");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn refused<T: std::fmt::Debug>(answer: Result<T, Status>, code: Code, what: &str) -> Status {
    match answer {
        Ok(ok) => panic!("{what} was answered: {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
    }
}

/// Sends one raft batch; the transport's answer.
async fn raft_send(
    channel: &Channel,
    key: Option<&str>,
    batch: pb::RaftBatch,
) -> Result<(), Status> {
    pb::raft_transport_client::RaftTransportClient::new(channel.clone())
        .max_encoding_message_size(usize::MAX)
        .send(with_key(tokio_stream::iter(vec![batch]), key))
        .await
        .map(|_| ())
}

/// A raft batch from `from` holding one `MsgAppend` of a higher term whose
/// entry is garbage: what an attacker would send to get an entry in.
fn forged_append(from: u64, to: u64) -> pb::RaftBatch {
    use protobuf::Message as _;
    let entry = raft::eraftpb::Entry {
        index: 1_000,
        term: 1_000,
        data: b"a command the attacker chose".to_vec().into(),
        ..Default::default()
    };
    let mut message = raft::eraftpb::Message::default();
    message.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
    message.from = from;
    message.to = to;
    message.term = 1_000;
    message.index = 999;
    message.log_term = 1_000;
    message.set_entries(vec![entry].into());
    pb::RaftBatch {
        from,
        messages: vec![message.write_to_bytes().expect("encode")],
    }
}

/// A worker session opened with `key` for `node`: the sender of its
/// messages and the scheduler's answers.
struct FakeWorker {
    tx: mpsc::Sender<pb::WorkerMessage>,
    inbound: tonic::Streaming<pb::SchedulerMessage>,
}

async fn open_session(
    channel: &Channel,
    key: Option<&str>,
    node: &str,
) -> Result<FakeWorker, Status> {
    let (tx, rx) = mpsc::channel(16);
    let register = pb::Register {
        node: node.into(),
        instance: format!("{node}-instance"),
        devices: vec![pb::DeviceGroup {
            flavor: "cpu".into(),
            count: 1,
            ..Default::default()
        }],
        models: vec!["tiny".into()],
        running: Vec::new(),
    };
    tx.send(pb::WorkerMessage {
        msg: Some(Up::Register(register)),
    })
    .await
    .expect("queue Register");
    let inbound = pb::worker_session_client::WorkerSessionClient::new(channel.clone())
        .session(with_key(ReceiverStream::new(rx), key))
        .await?
        .into_inner();
    Ok(FakeWorker { tx, inbound })
}

impl FakeWorker {
    /// The next assignment the scheduler sends, skipping other messages.
    async fn assignment(&mut self) -> pb::Assignment {
        within(30, "an assignment for the fake worker", async {
            loop {
                let message = self
                    .inbound
                    .message()
                    .await
                    .expect("session")
                    .expect("open");
                if let Some(pb::scheduler_message::Msg::Assignment(a)) = message.msg {
                    return a;
                }
            }
        })
        .await
    }

    async fn finish(&self, job_id: &str, epoch: u64, uri: String) {
        let finished = pb::Finished {
            lease: Some(pb::JobLease {
                job_id: job_id.into(),
                lease_epoch: epoch,
            }),
            artifacts: vec![pb::Artifact {
                kind: "video".into(),
                uri,
                size_bytes: 10,
                content_type: "video/mp4".into(),
            }],
        };
        self.tx
            .send(pb::WorkerMessage {
                msg: Some(Up::Finished(finished)),
            })
            .await
            .expect("send Finished");
    }
}

/// A tenant `acme` of the `default` queue, and a key of it.
async fn tenant_key(keyed: &Keyed, channel: &Channel) -> String {
    let mut tenants = pb::tenant_service_client::TenantServiceClient::new(channel.clone());
    let tenant = pb::Tenant {
        name: "acme".into(),
        queues: vec!["default".into()],
        ..Default::default()
    };
    let apply = pb::ApplyTenantRequest {
        tenant: Some(tenant),
    };
    tenants
        .apply(with_key(apply, Some(&keyed.admin)))
        .await
        .expect("apply a tenant");
    let create = pb::CreateKeyRequest {
        role: pb::Role::Tenant as i32,
        tenant: "acme".into(),
        ..Default::default()
    };
    tenants
        .create_key(with_key(create, Some(&keyed.admin)))
        .await
        .expect("a tenant key")
        .into_inner()
        .secret
}

async fn jobs_client(channel: &Channel) -> pb::job_service_client::JobServiceClient<Channel> {
    pb::job_service_client::JobServiceClient::new(channel.clone())
}

async fn submit_as(channel: &Channel, key: &str, prompt: &str) -> pb::Job {
    let request = pb::SubmitRequest {
        spec: Some(small_spec(prompt, 1)),
        request_id: String::new(),
    };
    jobs_client(channel)
        .await
        .submit(with_key(request, Some(key)))
        .await
        .expect("submit")
        .into_inner()
        .job
        .expect("a job")
}

/// Job `id` once `done` holds of it.
async fn job_when(
    channel: &Channel,
    key: &str,
    id: &str,
    done: impl Fn(&pb::Job) -> bool,
) -> pb::Job {
    let mut client = jobs_client(channel).await;
    within(30, "the job to reach the expected state", async {
        loop {
            let job = client
                .get(with_key(pb::GetJobRequest { id: id.into() }, Some(key)))
                .await
                .expect("get")
                .into_inner();
            if done(&job) {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_any_port() {
    let keyed = Keyed::start();
    let channel = keyed.channel().await;
    let none = None;
    let list = pb::job_service_client::JobServiceClient::new(channel.clone())
        .list(with_key(pb::ListJobsRequest::default(), none))
        .await;
    refused(list, Code::Unauthenticated, "listing jobs");
    let whoami = pb::tenant_service_client::TenantServiceClient::new(channel.clone())
        .who_am_i(with_key(pb::WhoAmIRequest {}, none))
        .await;
    refused(whoami, Code::Unauthenticated, "whoami");
    let status = pb::cluster_service_client::ClusterServiceClient::new(channel.clone())
        .status(with_key(pb::ReplicaStatusRequest::default(), none))
        .await;
    refused(status, Code::Unauthenticated, "cluster status");
    let nodes = pb::node_service_client::NodeServiceClient::new(channel.clone())
        .list(with_key(pb::ListNodesRequest::default(), none))
        .await;
    refused(nodes, Code::Unauthenticated, "listing nodes");
    let queues = pb::queue_service_client::QueueServiceClient::new(channel.clone())
        .list(with_key(pb::ListQueuesRequest::default(), none))
        .await;
    refused(queues, Code::Unauthenticated, "listing queues");
    let session = open_session(&channel, none, "intruder").await.map(|_| ());
    let status = refused(
        session,
        Code::Unauthenticated,
        "an anonymous worker session",
    );
    assert!(status.message().contains("worker key"), "{status:?}");
    let raft = raft_send(&channel, none, forged_append(2, 1)).await;
    let status = refused(raft, Code::Unauthenticated, "an anonymous raft message");
    assert!(
        status.message().contains("replica credential"),
        "{status:?}"
    );

    let api = keyed.scheduler.api.clone().expect("the REST API");
    let (code, body) = http_response(&format!("{api}/videos"));
    assert_eq!(code, 401, "the REST API without a key: {body}");
    // A key far longer than any is refused here, and the API front's own
    // connection to the gRPC port (shared by every caller) survives it.
    let huge = format!("Bearer gf_{}_b", "a".repeat(100_000));
    for _ in 0..3 {
        let (code, body) = http_request(
            "GET",
            &format!("{api}/videos"),
            &[("authorization", &huge)],
            "",
        );
        assert_eq!(code, 401, "a 100 KB key: {body}");
    }
    let admin = format!("Bearer {}", keyed.admin);
    let (code, body) = http_request(
        "GET",
        &format!("{api}/videos"),
        &[("authorization", &admin)],
        "",
    );
    assert_eq!(code, 200, "the admin after the huge keys: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_takes_messages_only_from_members_as_themselves() {
    let keyed = Keyed::start();
    let channel = keyed.channel().await;
    let status = || async {
        pb::cluster_service_client::ClusterServiceClient::new(channel.clone())
            .status(with_key(
                pb::ReplicaStatusRequest::default(),
                Some(&keyed.admin),
            ))
            .await
            .expect("status")
            .into_inner()
    };
    // The tenant and its key go in the log first.
    let tenant = tenant_key(&keyed, &channel).await;
    let before = status().await;

    // A real replica credential, of a replica that is not a member.
    let stranger = keyed.secret.replica_credential(9);
    let answer = raft_send(&channel, Some(&stranger), forged_append(9, 1)).await;
    let why = refused(answer, Code::PermissionDenied, "raft from a non-member");
    assert!(why.message().contains("not a member"), "{why:?}");
    // Replica 1's credential (the only member) claiming to be replica 2.
    let one = keyed.secret.replica_credential(1);
    let answer = raft_send(&channel, Some(&one), forged_append(2, 1)).await;
    let why = refused(answer, Code::PermissionDenied, "raft as another replica");
    assert!(why.message().contains("proved replica 1"), "{why:?}");
    // A credential bent from replica 1's to replica 9's name.
    let bent = one.replacen("gfr_1_", "gfr_9_", 1);
    let answer = raft_send(&channel, Some(&bent), forged_append(9, 1)).await;
    refused(answer, Code::Unauthenticated, "a forged replica credential");
    // Keys of every other role speak no raft, and open no worker session.
    for (what, key) in [
        ("the admin key", keyed.admin.clone()),
        ("a tenant key", tenant),
        ("a worker key", keyed.worker_key("*")),
    ] {
        let answer = raft_send(&channel, Some(&key), forged_append(1, 1)).await;
        refused(answer, Code::PermissionDenied, &format!("raft with {what}"));
        if !what.contains("worker") {
            let session = open_session(&channel, Some(&key), "gpu-a")
                .await
                .map(|_| ());
            refused(
                session,
                Code::PermissionDenied,
                &format!("a worker session with {what}"),
            );
        }
    }
    // And a replica credential is good for raft alone.
    let jobs = jobs_client(&channel)
        .await
        .list(with_key(pb::ListJobsRequest::default(), Some(&one)))
        .await;
    refused(
        jobs,
        Code::PermissionDenied,
        "listing jobs with a replica credential",
    );

    let after = status().await;
    assert_eq!(after.term, before.term, "a refused message moved the term");
    assert_eq!(
        after.last_index, before.last_index,
        "a refused message reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registers_only_its_own_nodes() {
    let keyed = Keyed::start();
    let channel = keyed.channel().await;
    let admin = Some(keyed.admin.as_str());

    // A stored worker key for one node, as `genfleet key create` makes it.
    let created = pb::tenant_service_client::TenantServiceClient::new(channel.clone())
        .create_key(with_key(
            pb::CreateKeyRequest {
                role: pb::Role::Worker as i32,
                node: "gpu-a".into(),
                description: "gpu-a's worker".into(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .expect("create a worker key")
        .into_inner();
    let stored = created.secret;
    let derived = keyed.worker_key("gpu-a");
    for (what, key) in [("stored", &stored), ("derived", &derived)] {
        let other = open_session(&channel, Some(key), "gpu-b").await.map(|_| ());
        let why = refused(
            other,
            Code::PermissionDenied,
            &format!("a {what} key for gpu-a registering gpu-b"),
        );
        assert!(why.message().contains("'gpu-a'"), "{why:?}");
        let own = open_session(&channel, Some(key), "gpu-a").await;
        assert!(
            own.is_ok(),
            "a {what} key for gpu-a registering gpu-a: {:?}",
            own.err()
        );
        // A worker key is for worker sessions only.
        let jobs = jobs_client(&channel)
            .await
            .list(with_key(pb::ListJobsRequest::default(), Some(key)))
            .await;
        refused(
            jobs,
            Code::PermissionDenied,
            &format!("listing jobs with a {what} worker key"),
        );
    }

    // A revoked key opens nothing.
    let id = created.key.expect("the stored key").id;
    pb::tenant_service_client::TenantServiceClient::new(channel.clone())
        .revoke_key(with_key(pb::RevokeKeyRequest { id }, admin))
        .await
        .expect("revoke");
    let revoked = open_session(&channel, Some(&stored), "gpu-a")
        .await
        .map(|_| ());
    refused(revoked, Code::Unauthenticated, "a revoked worker key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_be_taken_over_and_a_job_keeps_its_own_files() {
    let keyed = Keyed::start();
    let channel = keyed.channel().await;
    let admin = keyed.admin.clone();
    let mut worker_a = open_session(&channel, Some(&keyed.worker_key("node-a")), "node-a")
        .await
        .expect("node-a's worker");

    let first = submit_as(&channel, &admin, "a first job").await;
    let lease_a = worker_a.assignment().await;
    assert_eq!(lease_a.job_id, first.id);

    // An impostor with a key for another node cannot take node-a over.
    let takeover = open_session(&channel, Some(&keyed.worker_key("node-b")), "node-a")
        .await
        .map(|_| ());
    refused(
        takeover,
        Code::PermissionDenied,
        "registering another node's name",
    );
    // Nor report on node-a's job from its own node.
    let worker_b = open_session(&channel, Some(&keyed.worker_key("node-b")), "node-b")
        .await
        .expect("node-b's worker");
    let root = keyed.store_root();
    worker_b
        .finish(
            &first.id,
            lease_a.lease_epoch,
            format!("{root}/{}/video.mp4", first.id),
        )
        .await;

    // node-a finishes its job with its own file.
    worker_a
        .finish(
            &first.id,
            lease_a.lease_epoch,
            format!("{root}/{}/video.mp4", first.id),
        )
        .await;
    let done = job_when(&channel, &admin, &first.id, |j| {
        j.state() != pb::JobState::Running
    })
    .await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
    assert_eq!(done.node, "node-a");

    // The next job's worker answers with the first job's video: refused.
    let second = submit_as(&channel, &admin, "a second job").await;
    let mut worker_b = worker_b;
    let (lease, on_a) = within(30, "a worker gets the second job", async {
        tokio::select! {
            a = worker_a.assignment() => (a, true),
            b = worker_b.assignment() => (b, false),
        }
    })
    .await;
    let holder = if on_a { &worker_a } else { &worker_b };
    assert_eq!(lease.job_id, second.id);
    holder
        .finish(
            &second.id,
            lease.lease_epoch,
            format!("{root}/{}/video.mp4", first.id),
        )
        .await;
    let refused_job = job_when(&channel, &admin, &second.id, |j| j.state().is_terminal()).await;
    assert_eq!(refused_job.state(), pb::JobState::Failed, "{refused_job:?}");
    assert!(
        refused_job.message.contains("not a file of this job"),
        "{}",
        refused_job.message
    );

    // The first job's file was never written: the API says so without
    // saying where the server keeps its files.
    let api = keyed.scheduler.api.clone().expect("the REST API");
    let (code, body) = http_request(
        "GET",
        &format!("{api}/videos/{}/content", first.id),
        &[("authorization", &format!("Bearer {admin}"))],
        "",
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("cannot be read"), "{body}");
    let data_dir = text(keyed.dir.path());
    assert!(
        !body.contains(&data_dir) && !body.contains("file://"),
        "a server path reached the client: {body}"
    );
}

/// Resident memory of process `pid`, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_without_a_credential_leave_memory_flat() {
    const MIB: usize = 1024 * 1024;
    let keyed = Keyed::start();
    let channel = keyed.channel().await;
    let pid = keyed.scheduler.proc.pid();
    let before = rss_bytes(pid);
    let big = |i: u8| pb::RaftBatch {
        from: 2,
        messages: vec![vec![i; 200 * MIB]],
    };
    let sends = (0..3u8).map(|i| {
        let channel = channel.clone();
        let batch = big(i);
        async move { raft_send(&channel, None, batch).await }
    });
    let answers = within(
        120,
        "three 200 MiB raft messages",
        futures::future::join_all(sends),
    )
    .await;
    for answer in answers {
        refused(
            answer,
            Code::Unauthenticated,
            "a 200 MiB message without a credential",
        );
    }
    let after = rss_bytes(pid);
    let grown = after.saturating_sub(before);
    assert!(
        grown < (32 * MIB) as u64,
        "the scheduler grew by {} MiB ({} -> {} MiB) on messages it refused",
        grown / MIB as u64,
        before / MIB as u64,
        after / MIB as u64
    );
}

/// Mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read dir")
        .map_while(Result::ok)
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        }
        files.push(path);
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_log_and_keys_are_their_owners_alone() {
    let keyed = Keyed::start();
    // A job in the log first: the replica has written it by then.
    let channel = keyed.channel().await;
    submit_as(&channel, &keyed.admin, "a job in the log").await;
    let data = keyed.dir.path().join("scheduler");
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    let files = files_under(&data);
    assert!(!files.is_empty(), "the raft log is empty");
    for path in files {
        let bits = mode(&path);
        assert_eq!(bits & 0o077, 0, "{} is {bits:o}", path.display());
    }
    for secret in ["cluster-secret", "worker-key"] {
        let path = keyed.dir.path().join("secrets").join(secret);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// How a connection that never sends a byte ends: read until the server
/// closes it (or 30 s pass).
fn silent_connection_end(addr: &str) -> std::io::Result<usize> {
    use std::io::Read;
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    let mut socket = std::net::TcpStream::connect(&addr)?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut buffer = [0u8; 1024];
    // A gRPC server speaks first (its HTTP/2 settings): read on to the end.
    let mut received = 0;
    loop {
        match socket.read(&mut buffer)? {
            0 => return Ok(received),
            n => received += n,
        }
    }
}

#[test]
fn a_connection_that_never_speaks_is_closed() {
    let keyed = Keyed::start();
    let api = keyed.scheduler.api.clone().expect("the REST API");
    let grpc = keyed.scheduler.endpoint.clone();
    let ends = [grpc, api].map(|addr| std::thread::spawn(move || silent_connection_end(&addr)));
    for end in ends {
        match end.join().expect("reader") {
            Ok(_) => {} // closed by the server
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a silent connection was kept open for 30 s: {e}"
            ),
        }
    }
}

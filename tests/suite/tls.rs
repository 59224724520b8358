//! TLS between every part, on loopback, with the certificates of
//! `genfleet certs init`: three replicas keep raft over mutual TLS (a job
//! completes, and another after the first leader is killed), a worker with
//! its certificate registers and runs jobs, clients must trust the CA (the
//! CLI and the REST API), and a worker or raft peer that presents no client
//! certificate, or one from another CA, is refused.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::replicas::Replicas;
use common::*;
use genfleet_proto as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Makes a CA and certificates under `dir` with the CLI.
fn certs_init(dir: &Path) {
    let dir = dir.to_string_lossy().to_string();
    let (ok, _, err) = cli(&["certs", "init", "--dir", &dir]);
    assert!(ok, "certs init: {err}");
}

/// Runs the CLI trusting `ca`; (success, stdout, stderr).
fn cli_tls(ca: &Path, args: &[&str]) -> (bool, String, String) {
    let ca = ca.to_string_lossy().to_string();
    let mut all = vec!["--tls-ca", ca.as_str()];
    all.extend_from_slice(args);
    cli(&all)
}

/// Submits a small job with the CLI and waits for it: its last output.
fn run_job(ca: &Path, endpoints: &str, prompt: &str) -> String {
    let (ok, out, err) = cli_tls(
        ca,
        &[
            "submit",
            "--scheduler",
            endpoints,
            "--prompt",
            prompt,
            "--steps",
            "3",
            "--frames",
            "5",
            "--size",
            "64x48",
            "--watch",
        ],
    );
    assert!(ok, "the job did not complete: {out}\n{err}");
    out
}

/// A raw client of the gRPC port at `https://127.0.0.1:port`: trusting
/// `ca`, presenting `identity` (a tls.crt/tls.key folder) if given.
async fn raw_channel(
    port: u16,
    ca: &Path,
    identity: Option<&Path>,
) -> Result<tonic::transport::Channel, String> {
    let ca = std::fs::read(ca).expect("read ca");
    let mut tls = genfleet_proto::tls::api_client(&ca);
    if let Some(dir) = identity {
        let cert = std::fs::read(dir.join("tls.crt")).expect("cert");
        let key = std::fs::read(dir.join("tls.key")).expect("key");
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    genfleet_proto::tls::endpoint(&format!("https://127.0.0.1:{port}"), Some(&tls))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// What opening a worker session and sending a raft batch over `channel`
/// answer.
async fn member_calls(channel: tonic::transport::Channel) -> [Result<(), tonic::Status>; 2] {
    let register = pb::WorkerMessage {
        msg: Some(pb::worker_message::Msg::Register(pb::Register {
            node: "intruder".into(),
            instance: "x".into(),
            ..Default::default()
        })),
    };
    let session = pb::worker_session_client::WorkerSessionClient::new(channel.clone())
        .session(tokio_stream::iter(vec![register]))
        .await
        .map(|_| ());
    let raft = pb::raft_transport_client::RaftTransportClient::new(channel)
        .send(tokio_stream::iter(vec![pb::RaftBatch::default()]))
        .await
        .map(|_| ());
    [session, raft]
}

/// GET `path` from the REST API at `https://127.0.0.1:port`, trusting
/// `ca`: (status line, body), or the TLS error.
async fn https_get(port: u16, ca: &Path, path: &str) -> Result<(String, String), String> {
    use tokio_rustls::rustls;
    let pem = std::fs::read(ca).expect("read ca");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls::pki_types::CertificateDer = cert.expect("a PEM certificate");
        roots.add(cert).expect("a CA certificate");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A server may close without a TLS close_notify: what was read counts.
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches("/v1").parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_speaks_tls_and_members_must_prove_who_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let other = dir.path().join("other");
    certs_init(&certs);
    certs_init(&other);
    let ca = certs.join("ca.crt");
    let scheduler_tls = certs.join("scheduler").to_string_lossy().to_string();

    // Three replicas: peers are written http:// and dialled over mutual TLS.
    let mut replicas = Replicas::new(3, &["--tls-dir", &scheduler_tls]);
    let ports = replicas.ports.clone();
    let https = |id: u64| format!("https://127.0.0.1:{}", ports[&id]);
    let http_2 = replicas.endpoint(2);
    let all = [1, 2, 3].map(https).join(",");

    let models = dir.path().join("models");
    init_model(&models);
    let worker_tls = certs.join("worker").to_string_lossy().to_string();
    let (_worker, _) = start_worker_with(
        &all,
        "node-tls",
        &models,
        &dir.path().join("artifacts"),
        &["--tls-dir", &worker_tls],
    );
    let out = run_job(&ca, &all, "a lantern in the fog");
    assert!(out.contains("video.mp4"), "{out}");

    // Raft over mTLS elects a new leader among the other two.
    replicas.kill(1);
    let rest = [2, 3].map(https).join(",");
    let out = run_job(&ca, &rest, "a lantern after the failover");
    assert!(out.contains("video.mp4"), "{out}");

    // Clients must trust the CA.
    let (ok, _, err) = cli(&["jobs", "--scheduler", &rest]);
    assert!(!ok && err.contains("--tls-ca"), "{err}");
    let (ok, _, err) = cli_tls(&other.join("ca.crt"), &["jobs", "--scheduler", &https(2)]);
    assert!(!ok, "a client trusting another CA was answered");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let (ok, _, err) = cli(&["jobs", "--scheduler", &http_2]);
    assert!(!ok, "plain TCP to a TLS port was answered");
    assert!(err.contains("TLS"), "{err}");

    // No client certificate: the TLS session opens (API clients have
    // none), but worker sessions and raft are refused.
    let channel = raw_channel(ports[&2], &ca, None)
        .await
        .expect("TLS without a client certificate");
    for (what, answer) in ["worker session", "raft"]
        .iter()
        .zip(member_calls(channel).await)
    {
        let status = answer.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status:?}"
        );
        assert!(
            status.message().contains("client certificate"),
            "{what}: {status:?}"
        );
    }
    // A certificate from another CA: the handshake fails (or the first call).
    let refused = match raw_channel(ports[&2], &ca, Some(&other.join("worker"))).await {
        Err(_) => true,
        Ok(channel) => member_calls(channel).await.iter().all(|a| a.is_err()),
    };
    assert!(refused, "a worker certificate from another CA was accepted");
    // The cluster's own worker certificate opens a session.
    let channel = raw_channel(ports[&2], &ca, Some(&certs.join("worker")))
        .await
        .expect("TLS with the worker's certificate");
    let [session, _] = member_calls(channel).await;
    if let Err(status) = session {
        assert_ne!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_serves_over_tls_with_the_replicas_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let other = dir.path().join("other");
    certs_init(&certs);
    certs_init(&other);
    let tls = certs.join("scheduler").to_string_lossy().to_string();
    let artifacts = dir.path().join("artifacts").to_string_lossy().to_string();
    let scheduler = start_scheduler(
        &dir.path().join("scheduler"),
        "127.0.0.1:0",
        &[
            "--tls-dir",
            &tls,
            "--api-listen",
            "127.0.0.1:0",
            "--artifacts",
            &artifacts,
        ],
    );
    assert!(
        scheduler.endpoint.starts_with("https://"),
        "{}",
        scheduler.endpoint
    );
    let api = scheduler.api.clone().expect("an api= address");
    assert!(api.starts_with("https://"), "{api}");
    let port = port_of(&api);

    // The front calls its replica's gRPC over TLS too: a list answers.
    let (status, body) = https_get(port, &certs.join("ca.crt"), "/v1/videos")
        .await
        .expect("an HTTPS answer");
    assert!(status.contains(" 200"), "{status}: {body}");
    assert!(body.contains("\"object\":\"list\""), "{body}");
    // A client that trusts another CA does not get through.
    let refused = https_get(port, &other.join("ca.crt"), "/v1/videos").await;
    assert!(refused.is_err(), "{refused:?}");
}

/// Sends one raft batch claiming to be from `from` over `channel`.
async fn raft_batch_from(
    channel: tonic::transport::Channel,
    from: u64,
) -> Result<(), tonic::Status> {
    pb::raft_transport_client::RaftTransportClient::new(channel)
        .send(tokio_stream::iter(vec![pb::RaftBatch {
            from,
            messages: Vec::new(),
        }]))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_carry_the_role_and_the_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    certs_init(&certs);
    let ca = certs.join("ca.crt");
    let issue = |args: &[&str], out: &str| {
        let out = dir.path().join(out);
        let ca_dir = certs.to_string_lossy().to_string();
        let out_text = out.to_string_lossy().to_string();
        let mut all = vec!["certs", "issue", "--ca-dir", &ca_dir, "--out", &out_text];
        all.extend_from_slice(args);
        let (ok, said, err) = cli(&all);
        assert!(ok, "certs issue {args:?}: {err}");
        assert!(said.contains("spiffe://genfleet/"), "{said}");
        out
    };
    let replica_2 = issue(&["--replica", "2"], "replica-2");
    let node_x = issue(&["--worker", "node-x"], "node-x");
    let tls = certs.join("scheduler").to_string_lossy().to_string();
    let scheduler = start_scheduler(
        &dir.path().join("scheduler"),
        "127.0.0.1:0",
        &["--tls-dir", &tls],
    );
    let port = port_of(&scheduler.endpoint);
    let channel = |identity: &Path| {
        let identity = identity.to_path_buf();
        let ca = ca.clone();
        async move { raw_channel(port, &ca, Some(&identity)).await }
    };

    // A worker's certificate cannot speak raft.
    let worker = channel(&certs.join("worker"))
        .await
        .expect("TLS as a worker");
    let status = raft_batch_from(worker, 1)
        .await
        .expect_err("raft with a worker certificate");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // Replica 2's certificate cannot send as replica 3, nor as itself to
    // a cluster it is no member of.
    let as_3 = raft_batch_from(channel(&replica_2).await.expect("TLS"), 3)
        .await
        .expect_err("replica 2 sending as 3");
    assert_eq!(as_3.code(), tonic::Code::PermissionDenied, "{as_3:?}");
    assert!(as_3.message().contains("proved replica 2"), "{as_3:?}");
    let as_2 = raft_batch_from(channel(&replica_2).await.expect("TLS"), 2)
        .await
        .expect_err("a replica that is no member");
    assert!(as_2.message().contains("not a member"), "{as_2:?}");
    // A worker certificate for node-x registers node-x only.
    let register = |node: &str| pb::WorkerMessage {
        msg: Some(pb::worker_message::Msg::Register(pb::Register {
            node: node.into(),
            instance: "i".into(),
            ..Default::default()
        })),
    };
    let other = pb::worker_session_client::WorkerSessionClient::new(
        channel(&node_x).await.expect("TLS as node-x"),
    )
    .session(tokio_stream::iter(vec![register("node-y")]))
    .await
    .expect_err("node-x's certificate registering node-y");
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    let own = pb::worker_session_client::WorkerSessionClient::new(
        channel(&node_x).await.expect("TLS as node-x"),
    )
    .session(tokio_stream::iter(vec![register("node-x")]))
    .await;
    // Its registration has no devices: refused as a registration, not as a caller.
    if let Err(status) = own {
        assert!(
            !matches!(
                status.code(),
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ),
            "{status:?}"
        );
    }
}

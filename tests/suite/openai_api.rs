//! The OpenAI-compatible Videos API as OpenAI's own Python SDK uses it
//! (tests/openai/sdk_check.py, run with the pinned SDK that
//! `.ci/install-test-tools.sh` puts in target/test-tools/venv), against a
//! scheduler with an admin key, two tenants and a CPU worker; plus what
//! curl would see of the error shape.

use crate::common;
use crate::deploy_manifests::tools;

use std::path::Path;
use std::process::Command;

use common::{check_mp4, cli, http_request, init_model, spawn_ready, start_worker_with};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ADMIN_KEY: &str = "openai-test-admin-key-0123456789";

fn admin(endpoint: &str, args: &[&str]) -> String {
    let mut all = vec!["--api-key", ADMIN_KEY];
    all.extend(args);
    all.extend(["--scheduler", endpoint]);
    let (ok, out, err) = cli(&all);
    assert!(ok, "{args:?}: {err}");
    out
}

fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a decodable PNG");
    (reader.info().width, reader.info().height)
}

/// An HTTP request with the key and a JSON body: (status, body).
fn http(method: &str, url: &str, key: &str, body: &str) -> (u16, String) {
    let bearer = format!("Bearer {key}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    http_request(method, url, &headers, body)
}

#[test]
fn the_openai_sdk_makes_lists_downloads_and_deletes_videos() {
    let venv_python = Path::new(ROOT).join("target/test-tools/venv/bin/python");
    let with_sdk = Some(venv_python).filter(|p| {
        Command::new(p)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = tools::required("the OpenAI Python SDK (in the test-tools venv)", with_sdk)
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let artifacts = dir.path().join("artifacts");
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, ADMIN_KEY).expect("write the key");
    let data = dir.path().join("scheduler").to_string_lossy().to_string();
    let artifacts_arg = artifacts.to_string_lossy().to_string();
    let key_arg = key_file.to_string_lossy().to_string();
    let secrets = dir.path().join("secrets");
    let (ok, _, err) = cli(&["secrets", "init", "--dir", &secrets.to_string_lossy()]);
    assert!(ok, "secrets init: {err}");
    let secret_arg = secrets.join("cluster-secret").to_string_lossy().to_string();
    let worker_key_arg = secrets.join("worker-key").to_string_lossy().to_string();
    let (_scheduler, line) = spawn_ready(
        "scheduler",
        &[
            "scheduler",
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--artifacts",
            &artifacts_arg,
            "--admin-key-file",
            &key_arg,
            "--cluster-secret-file",
            &secret_arg,
        ],
        "ready: grpc=",
    );
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    let (endpoint, api) = (field("grpc="), field("api="));
    // The worker proves itself with a key derived from the cluster secret.
    let (_worker, _) = start_worker_with(
        &endpoint,
        "cpu-node",
        &models,
        &artifacts,
        &["--worker-key-file", &worker_key_arg],
    );

    let queues = dir.path().join("queues.yaml");
    std::fs::write(
        &queues,
        "name: studio\nquotas:\n  cpu: { nominal: 2 }\n---\nname: rival\nquotas:\n  cpu: { nominal: 1 }\n",
    )
    .expect("queues");
    admin(
        &endpoint,
        &["queue", "apply", "-f", &queues.to_string_lossy()],
    );
    admin(
        &endpoint,
        &["tenant", "apply", "studio", "--queues", "studio"],
    );
    admin(
        &endpoint,
        &["tenant", "apply", "rival", "--queues", "rival"],
    );
    let key = admin(&endpoint, &["key", "create", "--tenant", "studio"]);
    let other = admin(&endpoint, &["key", "create", "--tenant", "rival"]);

    let out = tempfile::tempdir().expect("tempdir");
    // create_and_poll polls until the job ends: bound it.
    let run = Command::new("timeout")
        .arg("300")
        .arg(&python)
        .args(["-W", "ignore::DeprecationWarning"])
        .arg(Path::new(ROOT).join("tests/openai/sdk_check.py"))
        .arg(out.path())
        .env("GENFLEET_API_BASE", &api)
        .env("GENFLEET_API_KEY", key.trim())
        .env("GENFLEET_OTHER_KEY", other.trim())
        .output()
        .expect("run the SDK check");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    println!("{seen:#}");

    let created = &seen["created"];
    assert_eq!(created["status"], "completed", "{seen}");
    assert_eq!(created["progress"], 100);
    assert_eq!(
        (created["seconds"].as_str(), created["size"].as_str()),
        (Some("1"), Some("64x48"))
    );
    assert!(created["completed_at"].is_i64(), "{seen}");
    // 1 s at 8 fps: a first frame and 8 more.
    check_mp4(
        Path::new(seen["video"].as_str().expect("path")),
        9,
        64,
        48,
        8,
    );
    for variant in ["thumbnail", "spritesheet"] {
        let (w, h) = png_size(Path::new(seen[variant].as_str().expect("path")));
        assert!(w >= 64 && h >= 48, "{variant}: {w}x{h}");
    }
    assert_eq!(seen["listed_all"], true, "{seen}");
    assert_eq!(seen["first_page"], 2);
    assert_eq!(seen["pages"], 3, "5 videos, 2 a page: {seen}");
    assert!(
        seen["listed"].as_array().is_some_and(|l| l.len() == 5),
        "{seen}"
    );
    for (name, param) in [("size", "size"), ("model", "model"), ("seconds", "seconds")] {
        let bad = &seen["bad"][name];
        assert_eq!(bad["status"], 400, "{name}: {bad}");
        assert_eq!(bad["param"], param, "{name}: {bad}");
    }
    assert_eq!(seen["other_tenant"], "not found");
    assert_eq!(seen["other_list"], serde_json::json!([]));
    assert_eq!(seen["wrong_key"], "refused");
    let remix = &seen["remix"];
    assert_eq!(remix["status"], "completed", "{seen}");
    assert_eq!(remix["remixed_from"], created["id"], "{seen}");
    assert_eq!(remix["prompt"], "a red kite over a calm sea");
    assert_eq!(remix["size"], created["size"]);
    assert_eq!(remix["seconds"], created["seconds"]);
    assert_eq!(seen["other_remix"], "not found");
    assert_eq!(seen["deleted"], true);
    assert_eq!(seen["after_delete"], "not found");

    // The error shape as any HTTP client sees it.
    let (status, body) = http(
        "POST",
        &format!("{api}/videos"),
        key.trim(),
        r#"{"prompt": "a kite", "size": "12x34"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(error["error"]["param"], "size", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("width")),
        "{body}"
    );
    let (status, body) = http(
        "GET",
        &format!("{api}/videos/j-000000000000"),
        key.trim(),
        "",
    );
    assert_eq!(status, 404, "{body}");
    let (status, _) = http("GET", &format!("{api}/videos"), "gf_bad_key", "");
    assert_eq!(status, 401);
}

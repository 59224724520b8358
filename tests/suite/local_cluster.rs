//! `genfleet up` as a new user runs it: the local cluster has API keys
//! without any setup, the CLI in another shell finds the admin key, a call
//! without a key is refused, and a restart keeps the key without touching
//! a key file that holds another one.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Starts `genfleet up` on free ports with `config` as XDG_CONFIG_HOME;
/// returns the process, its gRPC endpoint and its printed lines.
fn up(data: &Path, config: &Path) -> (Proc, String, Vec<String>) {
    up_with(data, config, &[])
}

/// [`up`] with more arguments.
fn up_with(data: &Path, config: &Path, extra: &[&str]) -> (Proc, String, Vec<String>) {
    let data = data.to_string_lossy().to_string();
    let config = config.to_string_lossy().to_string();
    let mut args = vec![
        "up",
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    let (proc, lines) = spawn_until("up", &args, &[("XDG_CONFIG_HOME", &config)], "  key ");
    let endpoint = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("gRPC"))
        .map(|e| e.trim().to_string())
        .unwrap_or_else(|| panic!("no gRPC line in {lines:?}"));
    (proc, endpoint, lines)
}

/// Runs the CLI with `config` as its config directory and no key in the
/// environment; returns (success, stdout, stderr).
fn cli_with_config(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("GENFLEET_API_KEY")
        .output()
        .expect("run genfleet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_makes_an_admin_key_that_the_cli_in_another_shell_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    let (mut proc, endpoint, lines) = up(&data, &config);

    let key = std::fs::read_to_string(data.join("admin-key")).expect("the admin key file");
    let key = key.trim();
    assert!(key.starts_with("gf_") && key.len() > 40, "{key}");
    let key_file = config.join("genfleet").join("api-key");
    let shared = std::fs::read_to_string(&key_file).expect("the CLI's key file");
    assert_eq!(shared.trim(), key);
    #[cfg(unix)]
    for path in [data.join("admin-key"), key_file.clone()] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is readable by others", path.display());
    }
    assert!(
        !lines.join("\n").contains(key),
        "the key is printed: {lines:?}"
    );

    // Another shell: the CLI reads the key file and is the admin.
    let (ok, _, err) = cli_with_config(&config, &["queue", "list", "--scheduler", &endpoint]);
    assert!(ok, "an admin command was refused: {err}");
    let (ok, out, err) = cli_with_config(&config, &["whoami", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    assert!(out.to_lowercase().contains("admin"), "{out}");

    // No key anywhere: refused, and told what to do.
    let empty = dir.path().join("empty");
    let (ok, _, err) = cli_with_config(&empty, &["jobs", "--scheduler", &endpoint]);
    assert!(!ok, "a call without a key was answered");
    assert!(err.contains("key"), "{err}");

    // A restart keeps the key; a key file with another key is left alone.
    proc.terminate(30);
    let other_config = dir.path().join("other");
    std::fs::create_dir_all(other_config.join("genfleet")).expect("mkdir");
    let other_key = other_config.join("genfleet").join("api-key");
    std::fs::write(&other_key, "gf_000000000001_someoneelse\n").expect("write");
    let (_proc, endpoint, lines) = up(&data, &other_config);
    let again = std::fs::read_to_string(data.join("admin-key")).expect("the admin key file");
    assert_eq!(again.trim(), key, "a restart made a new admin key");
    assert_eq!(
        std::fs::read_to_string(&other_key).expect("read"),
        "gf_000000000001_someoneelse\n"
    );
    let hint = lines
        .iter()
        .find(|l| l.contains("  key "))
        .expect("key line");
    assert!(
        hint.contains("holds another key") && hint.contains("GENFLEET_API_KEY"),
        "{hint}"
    );
    let (ok, _, err) = cli_with_config(&config, &["jobs", "--scheduler", &endpoint]);
    assert!(ok, "the first key file's key no longer works: {err}");
}

/// Runs the CLI as the admin of `config`; its stdout, which must be there.
fn succeed(config: &Path, args: &[&str]) -> String {
    let (ok, out, err) = cli_with_config(config, args);
    assert!(ok, "{args:?}: {err}");
    out
}

#[test]
fn client_commands_print_json_and_yaml_for_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    let (_proc, endpoint, _) = up(&dir.path().join("data"), &config);
    let ep = endpoint.as_str();

    let submitted = succeed(
        &config,
        &[
            "submit",
            "--scheduler",
            ep,
            "--prompt",
            "a kite",
            "--steps",
            "2",
            "--frames",
            "5",
            "--size",
            "64x48",
            "-o",
            "json",
        ],
    );
    let job: serde_json::Value = serde_json::from_str(&submitted).expect("submit -o json");
    let id = job["id"].as_str().expect("an id").to_string();
    assert!(id.starts_with("j-"), "{job}");
    assert_eq!(job["spec"]["prompt"], "a kite");

    // The watch ends with the job as JSON, its state by name.
    let watched = succeed(&config, &["watch", &id, "--scheduler", ep, "-o", "json"]);
    let job: serde_json::Value = serde_json::from_str(&watched).expect("watch -o json");
    assert_eq!(job["state"], "JOB_STATE_COMPLETED", "{job}");
    assert!(
        job["artifacts"].as_array().is_some_and(|a| a.len() == 3),
        "{job}"
    );

    let listed = succeed(&config, &["jobs", "--scheduler", ep, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&listed).expect("jobs -o json");
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["id"] == id.as_str())),
        "{list}"
    );
    let yaml = succeed(&config, &["get", &id, "--scheduler", ep, "-o", "yaml"]);
    let job: serde_json::Value = serde_yaml_ng::from_str(&yaml).expect("get -o yaml");
    assert_eq!(job["id"], id.as_str(), "{yaml}");
    let nodes = succeed(&config, &["node", "list", "--scheduler", ep, "-o", "yaml"]);
    let nodes: serde_json::Value = serde_yaml_ng::from_str(&nodes).expect("node list -o yaml");
    assert_eq!(nodes["items"][0]["name"], "local-0", "{nodes}");
    let me = succeed(&config, &["whoami", "--scheduler", ep, "-o", "json"]);
    let me: serde_json::Value = serde_json::from_str(&me).expect("whoami -o json");
    assert_eq!(me["role"], "ROLE_ADMIN", "{me}");

    let wide = succeed(&config, &["jobs", "--scheduler", ep, "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["QUEUE", "QOS", "TENANT", "MODEL"] {
        assert!(header.contains(column), "{header}");
    }
    let (ok, _, err) = cli_with_config(&config, &["jobs", "--scheduler", ep, "-o", "xml"]);
    assert!(!ok && err.contains("xml"), "{err}");

    // A reader that goes away (`| head`) is no error.
    let mut child = Command::new(BIN)
        .args(["jobs", "--scheduler", ep, "-o", "json"])
        .env("XDG_CONFIG_HOME", &config)
        .env_remove("GENFLEET_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run genfleet");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
}

/// SIGTERM while a job runs (Ctrl-C, `docker stop` and a pod's end take
/// the same path): the worker checkpoints the job while the schedulers
/// still serve, then the schedulers stop and the process exits. Started
/// again on the same data, the cluster finishes the job. (Before, the
/// schedulers stopped first and the draining worker kept the process alive
/// until SIGKILL.)
#[test]
fn up_exits_on_sigterm_while_a_job_runs_and_finishes_it_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let (mut proc, endpoint, _) = up_with(&data, &config, &["--replicas", "3"]);
    let submitted = succeed(
        &config,
        &[
            "submit",
            "--scheduler",
            &endpoint,
            "--prompt",
            "a long one",
            "--model",
            "tiny",
            "--size",
            "128x96",
            "--frames",
            "9",
            "--steps",
            "200",
            "-o",
            "json",
        ],
    );
    let job: serde_json::Value = serde_json::from_str(&submitted).expect("submit -o json");
    let id = job["id"].as_str().expect("an id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let got = succeed(
            &config,
            &["get", &id, "--scheduler", &endpoint, "-o", "json"],
        );
        let job: serde_json::Value = serde_json::from_str(&got).expect("get -o json");
        let step = job["step"].as_u64().unwrap_or(0);
        if job["state"] == "JOB_STATE_RUNNING" && step >= 1 {
            break;
        }
        assert!(
            job["state"] != "JOB_STATE_COMPLETED",
            "the job ended before the signal: make it longer"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the job never ran: {job}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let status = proc.terminate(60);
    assert!(status.success(), "genfleet up exited with {status}");

    let (_proc, endpoint, _) = up_with(&data, &config, &["--replicas", "3"]);
    let watched = succeed(
        &config,
        &["watch", &id, "--scheduler", &endpoint, "-o", "json"],
    );
    let job: serde_json::Value = serde_json::from_str(&watched).expect("watch -o json");
    assert_eq!(job["state"], "JOB_STATE_COMPLETED", "{job}");
}

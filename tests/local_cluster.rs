//! `genfleet up` as a new user runs it: the local cluster has API keys
//! without any setup, the CLI in another shell finds the admin key, a call
//! without a key is refused, and a restart keeps the key without touching
//! a key file that holds another one.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Starts `genfleet up` on free ports with `config` as XDG_CONFIG_HOME;
/// returns the process, its gRPC endpoint and its printed lines.
fn up(data: &Path, config: &Path) -> (Proc, String, Vec<String>) {
    let data = data.to_string_lossy().to_string();
    let config = config.to_string_lossy().to_string();
    let args = [
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

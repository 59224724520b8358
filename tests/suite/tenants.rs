//! Tenants and API keys on a 3-replica cluster with an admin key, through
//! the CLI (gRPC): calls without a valid key are refused, a tenant sees and
//! touches only its own jobs (another's answers "not found"), submits only
//! to its queues and up to its class, cannot run admin commands, and a
//! revoked key is refused by every replica.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::replicas::Replicas;
use common::{cli, BIN};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// Runs the CLI with `key` (or none) and no key from the environment or a
/// config file: (success, stdout, stderr).
pub fn run(config: &Path, key: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command
        .env_remove("GENFLEET_API_KEY")
        .env("XDG_CONFIG_HOME", config);
    if let Some(key) = key {
        command.args(["--api-key", key]);
    }
    let out = command.args(args).output().expect("run genfleet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`run`], and it must succeed: its stdout.
pub fn succeed(config: &Path, key: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(config, Some(key), args);
    assert!(ok, "{args:?}: {err}");
    out
}

/// Like [`run`], and it must fail: its stderr.
pub fn refused(config: &Path, key: Option<&str>, args: &[&str]) -> String {
    let (ok, out, err) = run(config, key, args);
    assert!(!ok, "{args:?} should be refused: {out}");
    err
}

#[test]
fn tenants_see_only_their_jobs_and_revoked_keys_are_refused_everywhere() {
    let config = tempfile::tempdir().expect("tempdir");
    let config = config.path();
    let key_file = config.join("admin.key");
    std::fs::write(&key_file, format!("{ADMIN_KEY}\n")).expect("write the admin key");
    let key_file = key_file.to_string_lossy().to_string();
    // Replicas of a cluster with keys prove themselves to each other too.
    let secrets = config.join("secrets");
    let (ok, _, err) = cli(&["secrets", "init", "--dir", &secrets.to_string_lossy()]);
    assert!(ok, "secrets init: {err}");
    let secret_file = secrets.join("cluster-secret").to_string_lossy().to_string();
    let mut replicas = Replicas::new(
        3,
        &[
            "--admin-key-file",
            &key_file,
            "--cluster-secret-file",
            &secret_file,
        ],
    );
    let ep = replicas.endpoint(1);
    let ep = ep.as_str();
    let call = |key: Option<&str>, args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--scheduler", ep]);
        run(config, key, &v)
    };

    // No key, or a made-up one: refused.
    let (ok, _, err) = call(None, &["jobs"]);
    assert!(!ok && err.contains("needs an API key"), "{err}");
    let (ok, _, err) = call(Some("gf_abc_def"), &["jobs"]);
    assert!(!ok && err.contains("not valid"), "{err}");

    // The admin sets up two queues, two tenants and a key for each.
    let queues = config.join("queues.yaml");
    std::fs::write(&queues, "name: red\n---\nname: blue\n").expect("write queues");
    let queues = queues.to_string_lossy().to_string();
    let admin = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--scheduler", ep]);
        succeed(config, ADMIN_KEY, &v)
    };
    admin(&["queue", "apply", "-f", &queues]);
    admin(&["tenant", "apply", "alpha", "--queues", "red"]);
    admin(&[
        "tenant",
        "apply",
        "beta",
        "--queues",
        "blue",
        "--max-qos",
        "standard",
    ]);
    let tenants = admin(&["tenant", "list"]);
    assert!(
        tenants.contains("alpha") && tenants.contains("beta"),
        "{tenants}"
    );
    let alpha = admin(&[
        "key",
        "create",
        "--tenant",
        "alpha",
        "--description",
        "alpha's CI",
    ]);
    let alpha = alpha.trim();
    let beta = admin(&["key", "create", "--tenant", "beta"]);
    let beta = beta.trim();
    assert!(alpha.starts_with("gf_") && beta.starts_with("gf_") && alpha != beta);
    let keys = admin(&["key", "list"]);
    assert!(
        keys.contains("alpha's CI") && !keys.contains(alpha),
        "secrets are never listed: {keys}"
    );

    let whoami = |key: &str| succeed(config, key, &["whoami", "--scheduler", ep]);
    assert!(
        whoami(alpha).starts_with("tenant alpha"),
        "{}",
        whoami(alpha)
    );
    assert!(whoami(ADMIN_KEY).starts_with("admin"));

    // Each submits into its own queue (the tenant's default queue).
    let submit = |key: &str, extra: &[&str]| {
        let mut v = vec!["submit", "--prompt", "a lighthouse", "--scheduler", ep];
        v.extend(extra);
        run(config, Some(key), &v)
    };
    let (ok_a, a_job, err) = submit(alpha, &[]);
    assert!(ok_a, "{err}");
    let a_job = a_job.trim().to_string();
    let (ok_b, b_job, err) = submit(beta, &[]);
    assert!(ok_b, "{err}");
    let b_job = b_job.trim().to_string();
    let (_, detail, _) = call(Some(alpha), &["get", &a_job]);
    assert!(detail.contains("red"), "alpha's default queue: {detail}");

    // Another tenant's job is "not found" to every call.
    for args in [
        vec!["get", b_job.as_str()],
        vec!["cancel", b_job.as_str()],
        vec!["watch", b_job.as_str()],
    ] {
        let mut v = args.clone();
        v.extend(["--scheduler", ep]);
        let err = refused(config, Some(alpha), &v);
        assert!(err.contains("no job with id"), "{args:?}: {err}");
    }
    let (_, listed, err) = call(Some(alpha), &["jobs"]);
    assert!(
        listed.contains(&a_job) && !listed.contains(&b_job),
        "{listed}{err}"
    );
    let everything = admin(&["jobs"]);
    assert!(everything.contains(&a_job) && everything.contains(&b_job));

    // Queues and classes it was not given; admin commands.
    let (ok, _, err) = submit(alpha, &["--queue", "blue"]);
    assert!(!ok && err.contains("may not submit to queue blue"), "{err}");
    let (ok, _, err) = submit(beta, &["--qos", "interactive"]);
    assert!(!ok && err.contains("above its highest, standard"), "{err}");
    for args in [
        vec!["queue", "list"],
        vec!["node", "list"],
        vec!["tenant", "list"],
        vec!["key", "create", "--tenant", "alpha"],
    ] {
        let mut v = args.clone();
        v.extend(["--scheduler", ep]);
        let err = refused(config, Some(alpha), &v);
        assert!(err.contains("needs an admin key"), "{args:?}: {err}");
    }
    // Its own job it may cancel.
    let (ok, out, err) = call(Some(alpha), &["cancel", &a_job]);
    assert!(ok && out.contains("cancelled"), "{out}{err}");

    let id = admin(&["key", "list", "--tenant", "alpha"])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .expect("alpha's key listed");
    assert!(alpha.contains(&id), "{id} is the id part of {alpha}");
    admin(&["key", "revoke", &id]);
    // A revoked key is refused by every replica at once: the revocation is
    // applied on the leader before `key revoke` returns, and every job call
    // is answered by the leader (a follower that has not applied it yet
    // forwards the key, and the leader refuses it).
    for replica in 1..=3 {
        let endpoint = replicas.endpoint(replica);
        let (ok, _, err) = run(config, Some(alpha), &["jobs", "--scheduler", &endpoint]);
        assert!(
            !ok && err.contains("not valid"),
            "replica {replica} takes the revoked key: {err}"
        );
        let (ok, _, err) = run(config, Some(beta), &["jobs", "--scheduler", &endpoint]);
        assert!(ok, "replica {replica} refuses beta's key: {err}");
    }
    // A tenant with keys cannot be deleted; without, it can.
    let err = refused(
        config,
        Some(ADMIN_KEY),
        &["tenant", "delete", "beta", "--scheduler", ep],
    );
    assert!(err.contains("revoke them first"), "{err}");
    admin(&["tenant", "delete", "alpha"]);

    // Keys, tenants and their jobs survive losing a replica (perhaps the
    // leader) and its restart from its own log.
    replicas.kill(1);
    let survivor = replicas.endpoint(2);
    let (ok, listed, err) = run(config, Some(beta), &["jobs", "--scheduler", &survivor]);
    assert!(ok && listed.contains(&b_job), "{listed}{err}");
    replicas.start(1, false);
    let (ok, listed, err) = run(config, Some(beta), &["jobs", "--scheduler", ep]);
    assert!(
        ok && listed.contains(&b_job) && !listed.contains(&a_job),
        "{listed}{err}"
    );
    let (ok, _, err) = run(config, Some(alpha), &["jobs", "--scheduler", ep]);
    assert!(
        !ok && err.contains("not valid"),
        "revoked before the restart: {err}"
    );
}

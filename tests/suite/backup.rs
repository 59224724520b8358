//! Backup and restore with real processes: `genfleet cluster snapshot save`
//! of a cluster with a queue, a tenant, its key and jobs, and `restore` of
//! that file into a fresh cluster brings every job, queue, tenant and key
//! back (the tenant's key works there, and sees only its jobs). The file is
//! its owner's only and never replaced; a cluster that holds anything
//! refuses a restore; only an admin may save or restore; a replica added
//! afterwards catches up with the restored state.

use crate::common;
use crate::tenants::{refused, run, succeed, ADMIN_KEY};

use std::os::unix::fs::PermissionsExt;

use common::start_scheduler;

#[test]
fn a_saved_state_restores_into_a_fresh_cluster_with_every_job_queue_tenant_and_key() {
    let config = tempfile::tempdir().expect("tempdir");
    let config = config.path();
    let key_file = config.join("admin.key");
    std::fs::write(&key_file, format!("{ADMIN_KEY}\n")).expect("write the admin key");
    let key_file = key_file.to_string_lossy().to_string();
    let keyed = ["--admin-key-file", key_file.as_str()];
    let old = start_scheduler(&config.join("old"), "127.0.0.1:0", &keyed);
    let old_ep = old.endpoint.as_str();

    // A queue, a tenant with a key, and jobs (no worker: they wait).
    let queues = config.join("queues.yaml");
    std::fs::write(&queues, "name: red\nquotas:\n  cpu:\n    nominal: 2\n").expect("write");
    let on = |ep: &str, key: &str, args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--scheduler", ep]);
        succeed(config, key, &v)
    };
    on(
        old_ep,
        ADMIN_KEY,
        &["queue", "apply", "-f", &queues.to_string_lossy()],
    );
    on(
        old_ep,
        ADMIN_KEY,
        &["tenant", "apply", "alpha", "--queues", "red"],
    );
    let alpha = on(old_ep, ADMIN_KEY, &["key", "create", "--tenant", "alpha"]);
    let alpha = alpha.trim().to_string();
    let mut alphas_jobs = Vec::new();
    for prompt in ["a lighthouse", "a harbour"] {
        let id = on(old_ep, &alpha, &["submit", "--prompt", prompt]);
        alphas_jobs.push(id.trim().to_string());
    }
    let admins_job = on(old_ep, ADMIN_KEY, &["submit", "--prompt", "a comet"]);
    let admins_job = admins_job.trim().to_string();

    // Only an admin saves; the file is its owner's; it is never replaced.
    let backup = config.join("genfleet.backup");
    let backup_arg = backup.to_string_lossy().to_string();
    let save = ["cluster", "snapshot", "save", backup_arg.as_str()];
    let err = refused(
        config,
        Some(&alpha),
        &[&save[..], &["--scheduler", old_ep]].concat(),
    );
    assert!(err.contains("admin"), "a tenant saves a backup: {err}");
    assert!(
        !backup.exists(),
        "a refused save wrote {}",
        backup.display()
    );
    let said = on(old_ep, ADMIN_KEY, &save);
    assert!(said.contains("saved the state"), "{said}");
    let mode = std::fs::metadata(&backup)
        .expect("the backup")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the backup is readable by others: {mode:o}"
    );
    let err = refused(
        config,
        Some(ADMIN_KEY),
        &[&save[..], &["--scheduler", old_ep]].concat(),
    );
    assert!(err.contains("exists"), "{err}");

    // A cluster that holds anything refuses a restore.
    let restore = ["cluster", "snapshot", "restore", backup_arg.as_str()];
    let err = refused(
        config,
        Some(ADMIN_KEY),
        &[&restore[..], &["--scheduler", old_ep]].concat(),
    );
    assert!(err.contains("fresh cluster"), "{err}");
    drop(old);

    // A fresh cluster takes it: one founding replica (with the cluster
    // secret replicas prove themselves with, so that others can join).
    let secrets = config.join("secrets");
    let (ok, _, err) = common::cli(&["secrets", "init", "--dir", &secrets.to_string_lossy()]);
    assert!(ok, "secrets init: {err}");
    let secret_file = secrets.join("cluster-secret").to_string_lossy().to_string();
    let founding = [
        "--admin-key-file",
        key_file.as_str(),
        "--cluster-secret-file",
        secret_file.as_str(),
    ];
    let new = start_scheduler(&config.join("new"), "127.0.0.1:0", &founding);
    let new_ep = new.endpoint.as_str();
    let said = on(new_ep, ADMIN_KEY, &restore);
    assert!(said.contains("restored 3 jobs"), "{said}");

    let queues = on(new_ep, ADMIN_KEY, &["queue", "list"]);
    assert!(queues.lines().any(|l| l.starts_with("red")), "{queues}");
    let tenants = on(new_ep, ADMIN_KEY, &["tenant", "list"]);
    assert!(tenants.contains("alpha"), "{tenants}");
    // The tenant's key is good here, and sees its own jobs only.
    let whoami = on(new_ep, &alpha, &["whoami"]);
    assert!(whoami.starts_with("tenant alpha"), "{whoami}");
    let seen = on(new_ep, &alpha, &["jobs"]);
    for id in &alphas_jobs {
        assert!(seen.contains(id.as_str()), "alpha's {id} is gone: {seen}");
    }
    assert!(
        !seen.contains(admins_job.as_str()),
        "alpha sees the admin's job: {seen}"
    );
    let all = on(new_ep, ADMIN_KEY, &["jobs"]);
    assert!(all.contains(admins_job.as_str()), "{all}");
    // Only an admin restores; and the cluster is no longer fresh.
    let err = refused(
        config,
        Some(&alpha),
        &[&restore[..], &["--scheduler", new_ep]].concat(),
    );
    assert!(err.contains("admin"), "a tenant restores a backup: {err}");
    let (ok, _, err) = run(
        config,
        Some(ADMIN_KEY),
        &[&restore[..], &["--scheduler", new_ep]].concat(),
    );
    assert!(
        !ok && err.contains("fresh cluster"),
        "a second restore: {err}"
    );

    // Then add replicas: a new one catches up with the restored state.
    let second_ep = format!("http://127.0.0.1:{}", common::replicas::free_port());
    let second_listen = second_ep.trim_start_matches("http://").to_string();
    let peers = format!("1={new_ep},2={second_ep}");
    let mut joining = founding.to_vec();
    joining.extend(["--id", "2", "--peers", &peers, "--join"]);
    let second = start_scheduler(&config.join("second"), &second_listen, &joining);
    on(
        new_ep,
        ADMIN_KEY,
        &[
            "cluster",
            "add-replica",
            "--id",
            "2",
            "--address",
            &second.endpoint,
        ],
    );
    // Its own state (not a forwarded read): the same hash as the founder's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = on(new_ep, ADMIN_KEY, &["cluster", "status", "-o", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&out).expect("status json");
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        let hashes: Vec<&str> = items
            .iter()
            .filter_map(|r| r["status"]["state_hash"].as_str())
            .collect();
        if hashes.len() == 2 && hashes[0] == hashes[1] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the added replica did not catch up with the restored state: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

//! Several scheduler processes as one: any replica serves, a whole-cluster
//! restart comes back with identical state on every replica, replicas
//! are added, removed and handed leadership with the CLI, and a leader
//! stopped by SIGTERM hands leadership over before it exits.

use crate::common;

use std::collections::BTreeSet;

use common::replicas::Replicas;
use common::*;
use genfleet_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_recovers_identical_state_on_every_replica() {
    let mut replicas = Replicas::new(3, &["--snapshot-every", "25", "--raft-tick", "50ms"]);
    replicas.converged(&[1, 2, 3]).await;

    // Writes through every replica: followers forward to the leader.
    let mut submitted = Vec::new();
    for i in 0..30u64 {
        let id = 1 + i % 3;
        let mut c = client(&replicas.endpoint(id)).await;
        let job = submit(&mut c, small_spec(&format!("job {i}"), i)).await;
        if i % 5 == 0 {
            let cancel = c.cancel(pb::CancelJobRequest { id: job.id.clone() });
            within(30, "cancel through a follower", cancel)
                .await
                .expect("cancel accepted");
        }
        submitted.push(job.id);
    }
    let before = replicas.converged(&[1, 2, 3]).await;
    let hash = before[&1].state_hash.clone();
    assert!(
        before.values().all(|s| s.snapshot_index > 1),
        "logs were compacted: {before:#?}"
    );

    for id in [1, 2, 3] {
        replicas.kill(id);
    }
    for id in [1, 2, 3] {
        replicas.start(id, false);
    }
    let after = replicas.converged(&[1, 2, 3]).await;
    for (id, status) in &after {
        assert_eq!(
            status.state_hash, hash,
            "replica {id} came back with another state"
        );
    }
    // Reads from any replica see every job.
    for id in [1, 2, 3] {
        let mut c = client(&replicas.endpoint(id)).await;
        let jobs = list(&mut c).await;
        let ids: BTreeSet<&String> = jobs.iter().map(|j| &j.id).collect();
        assert_eq!(ids.len(), 30);
        assert!(
            submitted.iter().all(|j| ids.contains(j)),
            "replica {id} misses a job"
        );
        let cancelled = jobs
            .iter()
            .filter(|j| j.state() == pb::JobState::Cancelled)
            .count();
        assert_eq!(cancelled, 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_join_leave_and_hand_over_leadership_from_the_cli() {
    let mut replicas = Replicas::new(3, &["--snapshot-every", "20", "--raft-tick", "50ms"]);
    replicas.converged(&[1, 2, 3]).await;
    let mut c = client(&replicas.endpoint(1)).await;
    for i in 0..40 {
        submit(&mut c, small_spec(&format!("before the join {i}"), i)).await;
    }

    // Replica 4 joins (it must catch up from a snapshot: the log was compacted).
    replicas.start(4, true);
    let any = replicas.endpoint(2);
    let address = replicas.endpoint(4);
    let (ok, out, err) = cli(&[
        "cluster",
        "add-replica",
        "--scheduler",
        &any,
        "--id",
        "4",
        "--address",
        &address,
    ]);
    assert!(ok, "add-replica failed: {err}");
    assert!(out.contains("replica 4") && out.contains("votes"), "{out}");
    let statuses = replicas.converged(&[1, 2, 3, 4]).await;
    assert_eq!(statuses[&4].voters, vec![1, 2, 3, 4]);
    assert!(
        statuses[&4].snapshot_index > 1,
        "the new replica started from a snapshot"
    );

    // The table shows every member.
    let (ok, out, _) = cli(&["cluster", "status", "--scheduler", &any]);
    assert!(ok);
    for id in 1..=4 {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{id} "))),
            "status lacks replica {id}:\n{out}"
        );
    }
    assert_eq!(out.matches("leader").count(), 1, "{out}");

    // Leadership moves to replica 4; replica 1 leaves.
    let (ok, _, err) = cli(&["cluster", "transfer-leader", "--scheduler", &any, "4"]);
    assert!(ok, "transfer-leader failed: {err}");
    assert_eq!(
        replicas.status(4).await.map(|s| s.role),
        Some("leader".to_string())
    );
    let (ok, _, err) = cli(&["cluster", "remove-replica", "--scheduler", &any, "1"]);
    assert!(ok, "remove-replica failed: {err}");
    replicas.kill(1);
    let statuses = replicas.converged(&[2, 3, 4]).await;
    assert_eq!(statuses[&2].voters, vec![2, 3, 4]);

    // The smaller cluster still takes writes, through a follower.
    let mut c = client(&replicas.endpoint(3)).await;
    let job = submit(&mut c, small_spec("after the change", 99)).await;
    assert!(list(&mut c).await.iter().any(|j| j.id == job.id));

    // Refusals name what was wrong.
    let (ok, _, err) = cli(&["cluster", "remove-replica", "--scheduler", &any, "9"]);
    assert!(!ok && err.contains("replica 9 is not a member"), "{err}");
    let (ok, _, err) = cli(&["cluster", "transfer-leader", "--scheduler", &any, "1"]);
    assert!(!ok && err.contains("replica 1 is not a voter"), "{err}");
}

/// A leader stopped as Kubernetes stops a pod (SIGTERM, in a rolling
/// restart) hands leadership to a caught-up follower before it exits: once
/// its process is gone another replica already leads, one term later. The
/// election timeout here is 3 to 6 s, so without the hand-over no replica
/// could lead within the 2 s the test waits for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_by_sigterm_hands_leadership_over_first() {
    let mut replicas = Replicas::new(3, &["--raft-tick", "300ms"]);
    let before = replicas.converged(&[1, 2, 3]).await;
    let (old, old_term) = before
        .values()
        .find(|s| s.role == "leader")
        .map(|s| (s.id, s.term))
        .expect("converged() returns a leader");
    let mut c = client(&replicas.endpoint(old)).await;
    submit(&mut c, small_spec("before the restart", 1)).await;

    let exit = replicas.terminate(old, 30).expect("the leader ran");
    assert!(exit.success(), "the leader exited with {exit} on SIGTERM");
    let new = within(2, "a leader among the remaining replicas", async {
        loop {
            if let Some(id) = replicas.leader().await {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_ne!(new, old);
    let status = replicas.status(new).await.expect("the new leader answers");
    assert_eq!(
        status.term,
        old_term + 1,
        "one hand-over, no election rounds: {status:?}"
    );
    // It takes submissions, and kept what the old leader accepted.
    let mut c = client(&replicas.endpoint(new)).await;
    submit(&mut c, small_spec("after the restart", 2)).await;
    let prompts: Vec<String> = list(&mut c)
        .await
        .into_iter()
        .filter_map(|j| j.spec.map(|s| s.prompt))
        .collect();
    for prompt in ["before the restart", "after the restart"] {
        assert!(
            prompts.iter().any(|p| p == prompt),
            "{prompt:?} lost: {prompts:?}"
        );
    }
}

//! The policy end to end: three scheduler replicas, two CPU workers and a
//! simulated GPU worker, real processes on loopback. A queue borrows its
//! cohort's idle quota, the owner takes it back by preemption, interactive
//! work preempts batch work (a CPU job and a simulated gang), and every
//! preempted job resumes from its checkpoint on whichever worker is free.
//! The resumed videos must equal uninterrupted runs of the same request.

use crate::common;

use common::replicas::Replicas;
use common::{
    apply_queues, artifact_path, cli, client, get_job, http_get, init_model, long_spec, metric,
    start_worker_with, submit, watch_to_end, watch_until, within,
};
use genfleet_proto as pb;

const QUEUES: &str = "\
name: team-a
cohort: lab
quotas:
  cpu: { nominal: 1 }
---
name: team-b
cohort: lab
quotas:
  cpu: { nominal: 1 }
---
name: render
quotas:
  nvidia-l4: { nominal: 2 }
";

/// A long CPU job in `queue` of class `qos`.
fn cpu_job(queue: &str, qos: &str, prompt: &str, seed: u64) -> pb::JobSpec {
    pb::JobSpec {
        queue: queue.into(),
        qos: qos.into(),
        ..long_spec(prompt, seed)
    }
}

fn running_a_step(job: &pb::Job) -> bool {
    job.state() == pb::JobState::Running && job.step >= 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_devices_are_reclaimed_and_interactive_work_preempts_batch_with_resume() {
    let replicas = Replicas::new(
        3,
        &["--min-runtime", "0s", "--metrics-listen", "127.0.0.1:0"],
    );
    replicas.converged(&[1, 2, 3]).await;
    let leader = replicas.leader().await.expect("a leader");
    let all: Vec<String> = (1..=3).map(|id| replicas.endpoint(id)).collect();
    let all = all.join(",");

    let dir = tempfile::tempdir().expect("tempdir");
    apply_queues(&all, dir.path(), QUEUES);

    // One artifact store for all workers (as a shared bucket would be):
    // a checkpoint written by one is read by another.
    let models = dir.path().join("models");
    init_model(&models);
    let artifacts = dir.path().join("artifacts");
    let metrics_flag = ["--metrics-listen", "127.0.0.1:0"];
    let (_cpu_a, cpu_a) = start_worker_with(&all, "cpu-a", &models, &artifacts, &metrics_flag);
    let (_cpu_b, cpu_b) = start_worker_with(&all, "cpu-b", &models, &artifacts, &metrics_flag);
    let (_l4, _) = start_worker_with(
        &all,
        "l4-node",
        &models,
        &artifacts,
        &["--simulate", "nvidia-l4:2"],
    );
    let mut jobs = client(&replicas.endpoint(leader)).await;

    // The simulated gang: a batch job of two L4s, preempted by an
    // interactive gang of the same queue, resumes from its step.
    let mut gang_spec = cpu_job("render", "batch", "a long render", 10);
    gang_spec.tp = 2;
    gang_spec.steps = 200;
    let gang = submit(&mut jobs, gang_spec).await;
    watch_until(&mut jobs, &gang.id, "the batch gang runs", running_a_step).await;
    let mut urgent_gang = cpu_job("render", "interactive", "a preview", 11);
    urgent_gang.tp = 2;
    let urgent_gang = submit(&mut jobs, urgent_gang).await;

    // Borrowing: team-b's two batch jobs take both CPUs, one of them team-a's.
    let batch_1 = submit(&mut jobs, cpu_job("team-b", "batch", "a red kite", 1)).await;
    let batch_2 = submit(&mut jobs, cpu_job("team-b", "batch", "a blue boat", 2)).await;
    for id in [&batch_1.id, &batch_2.id] {
        watch_until(&mut jobs, id, "team-b's batch job runs", running_a_step).await;
    }
    let leader_metrics = replicas.metrics[&leader].clone();
    let borrowed = [("queue", "team-b"), ("flavor", "cpu"), ("kind", "borrowed")];
    within(30, "team-b is seen borrowing one cpu", async {
        while metric(
            &http_get(&leader_metrics),
            "genfleet_queue_devices",
            &borrowed,
        ) != Some(1.0)
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;

    // Reclaim: team-a asks for its nominal device back. Same request as
    // batch_1, so its video is batch_1's uninterrupted reference.
    let owner = submit(&mut jobs, cpu_job("team-a", "standard", "a red kite", 1)).await;
    let owner = watch_until(&mut jobs, &owner.id, "team-a's job runs", running_a_step).await;
    // Interactive over batch: team-b's chat job takes its batch job's device.
    // Same request as batch_2: its reference.
    let chat = submit(
        &mut jobs,
        cpu_job("team-b", "interactive", "a blue boat", 2),
    )
    .await;

    let (chat, _) = watch_to_end(&mut jobs, &chat.id, 300).await;
    let (owner, _) = watch_to_end(&mut jobs, &owner.id, 300).await;
    let (batch_1, _) = watch_to_end(&mut jobs, &batch_1.id, 300).await;
    let (batch_2, _) = watch_to_end(&mut jobs, &batch_2.id, 300).await;
    let (urgent_gang, _) = watch_to_end(&mut jobs, &urgent_gang.id, 300).await;
    let (gang, _) = watch_to_end(&mut jobs, &gang.id, 300).await;
    for job in [&chat, &owner, &batch_1, &batch_2, &urgent_gang, &gang] {
        assert_eq!(job.state(), pb::JobState::Completed, "{job:?}");
    }

    // Each batch job was preempted once and resumed from a saved step; the
    // jobs that preempted them never were.
    for job in [&batch_1, &batch_2] {
        let checkpoint = job.checkpoint.clone().expect("resumed from a checkpoint");
        assert_eq!(job.preemptions, 1, "{job:?}");
        assert!(
            checkpoint.step >= 1 && checkpoint.step < 160,
            "{checkpoint:?}"
        );
        assert!(checkpoint.uri.ends_with(".safetensors"), "{checkpoint:?}");
    }
    for job in [&chat, &owner, &urgent_gang] {
        assert_eq!((job.preemptions, job.requeues), (0, 0), "{job:?}");
    }
    let gang_checkpoint = gang.checkpoint.clone().expect("the gang resumed");
    assert_eq!(gang.preemptions, 1);
    assert!(gang_checkpoint.step >= 1 && gang_checkpoint.uri.is_empty());
    assert_eq!(gang.node, "l4-node");

    // The resumed videos are the uninterrupted ones, byte for byte.
    for (resumed, reference) in [(&batch_1, &owner), (&batch_2, &chat)] {
        let a = std::fs::read(artifact_path(resumed, "video")).expect("resumed video");
        let b = std::fs::read(artifact_path(reference, "video")).expect("reference video");
        assert!(
            a == b,
            "{} (resumed) differs from {} (uninterrupted)",
            resumed.id,
            reference.id
        );
    }

    // The workers read both checkpoints back; the leader counted the
    // preemptions by reason.
    let resumed: f64 = [cpu_a, cpu_b]
        .iter()
        .map(|url| {
            let text = http_get(url.as_deref().expect("worker metrics"));
            metric(
                &text,
                "genfleet_worker_checkpoint_loads_total",
                &[("result", "resumed")],
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(resumed, 2.0);
    let text = http_get(&leader_metrics);
    let count =
        |reason| metric(&text, "genfleet_preemptions_total", &[("reason", reason)]).unwrap_or(0.0);
    assert_eq!(count("reclaim_quota"), 1.0, "{text}");
    assert_eq!(count("interactive_over_batch"), 2.0, "{text}");

    // `genfleet get` tells where a preempted job resumed from.
    let (ok, out, err) = cli(&["get", &batch_1.id, "--scheduler", &all]);
    assert!(ok, "{err}");
    assert!(
        out.contains("1 preempted") && out.contains("resumes:   from step"),
        "{out}"
    );
    let again = get_job(&mut jobs, &batch_1.id).await;
    assert_eq!(again.checkpoint, batch_1.checkpoint);
}

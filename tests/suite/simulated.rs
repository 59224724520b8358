//! `genfleet worker --simulate`: devices the fleet does not have, for
//! exercising the scheduler at scale. Jobs on them advance at the leader's
//! estimated step rate, produce no video, and say they are simulated.

use crate::common;

use common::{
    cli, client, http_get, metric, small_spec, start_worker, start_worker_with, submit,
    watch_to_end, watch_until, Local,
};
use genfleet_proto as pb;

const H100: &str = "nvidia-h100-80gb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_gpus_take_the_work_their_flavor_is_best_for() {
    let local = Local::start(&[]);
    let endpoint = local.endpoint.clone();
    let _cpu = start_worker(&endpoint, "cpu-node", &local.models, &local.artifacts);
    let (_gpus, gpu_metrics) = start_worker_with(
        &endpoint,
        "h100-node",
        &local.models,
        &local.artifacts,
        &[
            "--simulate",
            &format!("{H100}:8"),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );

    // An interactive gang of 8 can only run on the simulated H100s; an
    // interactive job of 1 goes there too, as the fastest flavor.
    let mut jobs = client(&endpoint).await;
    let mut gang = small_spec("a gang of eight", 1);
    gang.tp = 8;
    gang.qos = "interactive".into();
    let gang = submit(&mut jobs, gang).await;
    let (gang, _) = watch_to_end(&mut jobs, &gang.id, 120).await;
    assert_eq!(gang.state(), pb::JobState::Completed, "{gang:?}");
    assert_eq!(gang.node, "h100-node");
    assert!(gang.simulated && gang.artifacts.is_empty(), "{gang:?}");

    let mut chat = small_spec("a quick one", 2);
    chat.qos = "interactive".into();
    let chat = submit(&mut jobs, chat).await;
    let (chat, _) = watch_to_end(&mut jobs, &chat.id, 120).await;
    assert_eq!(
        chat.node, "h100-node",
        "interactive work takes the fastest flavor"
    );

    // The CLI and the worker's metrics say the devices are simulated.
    let (ok, out, err) = cli(&["get", &gang.id, "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    assert!(out.contains("simulated devices"), "{out}");
    let text = http_get(gpu_metrics.as_deref().expect("metrics url"));
    let labels = [("flavor", H100), ("simulated", "true")];
    assert_eq!(
        metric(&text, "genfleet_worker_devices", &labels),
        Some(8.0),
        "{text}"
    );

    // A gang wider than any node is refused at submit.
    let mut too_wide = small_spec("sixteen", 3);
    too_wide.tp = 16;
    let refused = jobs
        .submit(pb::SubmitRequest {
            spec: Some(too_wide),
            request_id: String::new(),
        })
        .await
        .expect_err("no node has 16 devices");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_big_for_the_devices_memory_waits_and_says_why() {
    let local = Local::start(&[]);
    let endpoint = local.endpoint.clone();
    // One L4: 24 GiB, the flavor's known size.
    let (_l4, _) = start_worker_with(
        &endpoint,
        "l4-node",
        &local.models,
        &local.artifacts,
        &["--simulate", "nvidia-l4:1"],
    );

    // Wan2.1-1.3B (bf16) at 720p, 129 frames, needs about 27.8 GiB on one device.
    let mut jobs = client(&endpoint).await;
    let big = pb::JobSpec {
        model: "wan2.1-1.3b".into(),
        frames: 129,
        width: 1280,
        height: 720,
        ..small_spec("a long 720p video", 4)
    };
    let big = submit(&mut jobs, big).await;
    let waiting = watch_until(&mut jobs, &big.id, "the big job waits for memory", |j| {
        j.pending_reason.contains("per device")
    })
    .await;
    assert_eq!(waiting.state(), pb::JobState::Pending, "{waiting:?}");
    let reason = &waiting.pending_reason;
    assert!(
        reason.starts_with("needs ")
            && reason.contains("GiB per device at tp 1; the largest nvidia-l4 has 24.0 GiB")
            && reason.contains("a smaller size"),
        "{reason}"
    );
    assert_eq!(waiting.eta_seconds, None, "no end of other work makes room");

    // A small job runs on the same device meanwhile.
    let small = submit(&mut jobs, small_spec("a small one", 5)).await;
    let (small, _) = watch_to_end(&mut jobs, &small.id, 120).await;
    assert_eq!(small.state(), pb::JobState::Completed, "{small:?}");
    assert_eq!(small.node, "l4-node");

    // The CLI shows the reason.
    for args in [vec!["get", big.id.as_str()], vec!["jobs"]] {
        let mut args = args;
        args.extend(["--scheduler", &endpoint]);
        let (ok, out, err) = cli(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            out.contains("the largest nvidia-l4 has 24.0 GiB"),
            "{args:?}: {out}"
        );
    }
    let (ok, out, err) = cli(&["node", "list", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    assert!(out.contains("1xnvidia-l4 24.0 GiB (simulated)"), "{out}");
}

#[test]
fn bad_simulated_devices_are_refused_at_start() {
    for (flag, expected) in [
        ("gpu", "FLAVOR:COUNT"),
        ("NVIDIA:8", "not a valid name"),
        ("cpu:0", "between 1 and 64"),
        ("nvidia-l4:1:24G", "like 24GiB"),
    ] {
        let (ok, _, err) = cli(&[
            "worker",
            "--scheduler",
            "http://127.0.0.1:1",
            "--simulate",
            flag,
        ]);
        assert!(!ok && err.contains(expected), "{flag}: {err}");
    }
}

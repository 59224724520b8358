//! `genfleet plan` as a planner runs it: the shipped example files, the
//! outputs on disk, a sweep, and inputs that are wrong in the ways real
//! ones are.

use crate::common;

use std::path::{Path, PathBuf};

use common::{cli, Local};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/examples/plan")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

/// A fleet.yaml of one node of `devices` devices of `flavor`.
fn one_node_fleet(dir: &Path, flavor: &str, devices: u32, price: f64) -> String {
    let pool = format!("{{flavor: {flavor}, nodes: 1, devices_per_node: {devices}, price_per_device_hour: {price}}}");
    write(dir, "fleet.yaml", &format!("pools:\n  - {pool}\n"))
}

/// A trace.csv of these rows under the documented header.
fn trace_of(dir: &Path, rows: &[&str]) -> String {
    let mut text = String::from("arrival_s,queue,qos,model,frames,size,steps,tp\n");
    for row in rows {
        text += row;
        text.push('\n');
    }
    write(dir, "trace.csv", &text)
}

#[test]
fn the_example_plan_prints_its_table_and_writes_json_charts_and_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let (fleet, queues, trace) = (
        example("fleet.yaml"),
        example("queues.yaml"),
        example("trace.csv"),
    );
    let (ok, stdout, stderr) = cli(&[
        "plan",
        "--fleet",
        &fleet,
        "--queues",
        &queues,
        "--trace",
        &trace,
        "--target",
        "interactive.p95_wait<=30s",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{stderr}");
    for expected in [
        "CLASS/QUEUE",
        "interactive",
        "research",
        "nvidia-h100-80gb",
        "met    interactive.p95_wait<=30s",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    let rows = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .count() as u64
        - 1;
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("json"))
            .expect("valid json");
    assert_eq!(json["jobs"].as_u64(), Some(rows));
    assert_eq!(
        json["completed"].as_u64(),
        Some(rows),
        "the example fleet finishes its trace"
    );
    assert_eq!(json["targets"][0]["met"].as_bool(), Some(true));
    for chart in ["queue-depth.svg", "utilization.svg", "wait-cdf.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).expect(chart);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{chart}"
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert_eq!(html.matches("<svg").count(), 3, "the charts are inline");
    assert!(!html.contains("src=\"http"), "self-contained");
}

#[test]
fn a_sweep_finds_the_cheapest_fleet_that_meets_the_targets() {
    let (fleet, queues, trace) = (
        example("fleet.yaml"),
        example("queues.yaml"),
        example("trace.csv"),
    );
    let plan = |target: &str| {
        cli(&[
            "plan",
            "--fleet",
            &fleet,
            "--queues",
            &queues,
            "--trace",
            &trace,
            "--target",
            target,
            "--sweep",
            "nvidia-h100-80gb=0..2",
            "--sweep",
            "nvidia-l4=0,1",
        ])
    };
    let (ok, stdout, stderr) = plan("interactive.p95_wait<=30s");
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("nvidia-h100-80gb x"))
            .count(),
        5,
        "{stdout}"
    );
    assert!(
        stdout.contains("cheapest fleet that meets every target:"),
        "{stdout}"
    );
    // An impossible target: said so, and a failure.
    let (ok, _, stderr) = plan("interactive.p50_e2e<=1ms");
    assert!(
        !ok && stderr.contains("no fleet of the sweep met every target"),
        "{stderr}"
    );
}

#[test]
fn bad_inputs_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = example("fleet.yaml");
    let queues = example("queues.yaml");
    let header = "arrival_s,queue,qos,model,frames,size,steps,tp\n";
    let good_row = "0,product,interactive,tiny,17,256x256,20,1\n";
    let trace = |rows: &str| {
        write(
            dir.path(),
            "trace.csv",
            &format!("{header}{good_row}{rows}"),
        )
    };
    let plan = |fleet: &str, queues: &str, trace: &str| {
        cli(&[
            "plan", "--fleet", fleet, "--queues", queues, "--trace", trace,
        ])
    };
    for (row, expected) in [
        (
            "-5,product,batch,tiny,17,256x256,20,1\n",
            "trace.csv:3: arrival_s:",
        ),
        (
            "1,product,batch,tiny,17,250x256,20,1\n",
            "trace.csv:3: size:",
        ),
        ("1,product,batch,tiny,17,256x256,20,0\n", "trace.csv:3: tp:"),
        (
            "1,nobody,batch,tiny,17,256x256,20,1\n",
            "trace.csv:3: queue: \"nobody\" is not a queue",
        ),
        (
            "1,product,batch,sora,17,256x256,20,1\n",
            "trace.csv:3: model: no pool of the fleet serves",
        ),
        (
            "1,product,batch,tiny,17,256x256,20,16\n",
            "trace.csv:3: tp: 16: the widest node",
        ),
    ] {
        let (ok, _, stderr) = plan(&fleet, &queues, &trace(row));
        assert!(!ok && stderr.contains(expected), "{row}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let unknown_flavor = write(
        dir.path(),
        "queues.yaml",
        "name: product\nquotas:\n  nvidia-a100-80gb: { nominal: 8 }\n",
    );
    let (ok, _, stderr) = plan(&fleet, &unknown_flavor, &trace(""));
    assert!(
        !ok && stderr.contains("queues.yaml: queue product: quotas.nvidia-a100-80gb: no pool of the fleet has this flavor"),
        "{stderr}"
    );
    let empty = write(dir.path(), "fleet.yaml", "pools:\n  - {flavor: nvidia-l4, nodes: 0, devices_per_node: 4, price_per_device_hour: 1}\n");
    let (ok, _, stderr) = plan(&empty, &queues, &trace(""));
    assert!(
        !ok && stderr.contains("fleet.yaml: pools: the fleet has no devices"),
        "{stderr}"
    );
    let trace = trace("");
    for (target, expected) in [
        ("interactive.p95<=3s", "p95_wait<=30s"),
        (
            "nobody.p95_wait<=3s",
            "no jobs of a class or queue named \"nobody\"",
        ),
    ] {
        let (ok, _, stderr) = cli(&[
            "plan", "--fleet", &fleet, "--queues", &queues, "--trace", &trace, "--target", target,
        ]);
        assert!(!ok && stderr.contains(expected), "{target}: {stderr}");
    }
}

/// A live cluster's learned step rates, exported and planned with.
#[test]
fn a_profile_exported_from_a_live_cluster_feeds_a_plan() {
    let local = Local::start(&[]);
    let endpoint = local.endpoint.clone();
    let _worker = common::start_worker(&endpoint, "cpu-node", &local.models, &local.artifacts);
    let (ok, out, err) = cli(&[
        "submit",
        "--scheduler",
        &endpoint,
        "--prompt",
        "a kite",
        "--model",
        "tiny",
        "--size",
        "64x64",
        "--frames",
        "9",
        "--steps",
        "4",
        "--watch",
    ]);
    assert!(ok && out.contains("completed"), "{out}{err}");

    let profile = local.dir.path().join("profile.yaml");
    let profile = profile.to_str().expect("utf-8");
    let (ok, out, err) = cli(&[
        "profile",
        "export",
        "--scheduler",
        &endpoint,
        "--out",
        profile,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("rates written to"), "{out}");
    let text = std::fs::read_to_string(profile).expect("profile");
    let learned = text
        .lines()
        .find(|l| l.contains("model: tiny, flavor: cpu, tp: 1,"))
        .unwrap_or_else(|| panic!("no tiny-on-cpu rate: {text}"));
    let rate: f64 = learned
        .rsplit("steps_per_s: ")
        .next()
        .and_then(|r| r.trim_end_matches(" }").parse().ok())
        .unwrap_or_else(|| panic!("{learned}"));
    assert!(
        rate > 0.0 && rate != 2.0,
        "a measured rate, not the seeded 2.0: {rate}"
    );

    // The plan runs at that rate: one job of 20 steps alone on a CPU.
    let fleet = one_node_fleet(local.dir.path(), "cpu", 1, 0.1);
    let trace = trace_of(local.dir.path(), &["0,default,standard,tiny,9,64x64,20,1"]);
    let out_dir = local.dir.path().join("plan");
    let (ok, _, err) = cli(&[
        "plan",
        "--fleet",
        &fleet,
        "--trace",
        &trace,
        "--profile",
        profile,
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{err}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).expect("json"))
            .expect("json");
    let e2e = json["classes"][0]["end_to_end_s"]["p50"]
        .as_f64()
        .expect("e2e");
    assert!(
        (e2e - 20.0 / rate).abs() < 0.01 + 0.001 * e2e,
        "{e2e} s at {rate} steps/s"
    );
}

/// A model the profile has no rate for on a flavor of the fleet runs at
/// 1 step/s, and the plan says so.
#[test]
fn a_plan_warns_of_rates_it_has_to_assume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = one_node_fleet(dir.path(), "nvidia-l4", 4, 0.8);
    let trace = trace_of(
        dir.path(),
        &[
            "0,default,standard,medium,17,256x256,20,1",
            "1,default,standard,tiny,17,256x256,20,1",
        ],
    );
    let (ok, _, stderr) = cli(&["plan", "--fleet", &fleet, "--trace", &trace]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("no step rate for medium on nvidia-l4: assuming 1 step/s"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("for tiny"),
        "the seeded profile has tiny: {stderr}"
    );
    let profile = write(
        dir.path(),
        "profile.yaml",
        "rates:\n  - { model: medium, flavor: nvidia-l4, tp: 1, steps_per_s: 2.5 }\n",
    );
    let (ok, _, stderr) = cli(&[
        "plan",
        "--fleet",
        &fleet,
        "--trace",
        &trace,
        "--profile",
        &profile,
    ]);
    assert!(ok && !stderr.contains("warning"), "{stderr}");
}

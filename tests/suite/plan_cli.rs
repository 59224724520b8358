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
    let recommendation = html
        .find("id=\"recommendation\"")
        .expect("a recommendation");
    let first_chart = html.find("<svg").expect("charts inline");
    assert!(
        recommendation < first_chart,
        "the recommendation comes first"
    );
    assert!(html.matches("<svg").count() >= 3, "the charts are inline");
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

/// The workload comes from a trace or a generator description, exactly
/// one of them: usage and errors name both (clap once said only `--trace`
/// was required).
#[test]
fn a_plan_without_a_workload_names_both_ways_to_give_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = one_node_fleet(dir.path(), "cpu", 1, 1.0);
    let both = "<--trace <TRACE>|--generate <GENERATE>>";
    let (ok, _, stderr) = cli(&["plan"]);
    assert!(!ok, "no arguments at all");
    assert!(stderr.contains("--fleet <FLEET>"), "{stderr}");
    assert!(stderr.contains(both), "{stderr}");
    let (ok, _, stderr) = cli(&["plan", "--fleet", &fleet]);
    assert!(!ok, "a fleet without a workload");
    assert!(stderr.contains(both), "{stderr}");
    assert!(
        !stderr.contains("--fleet <FLEET>\n"),
        "--fleet was given: {stderr}"
    );
    let (ok, _, stderr) = cli(&[
        "plan",
        "--fleet",
        &fleet,
        "--trace",
        "a.csv",
        "--generate",
        "b.yaml",
    ]);
    assert!(!ok, "two workloads");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (ok, stdout, stderr) = cli(&["plan", "--help"]);
    assert!(ok, "{stderr}");
    let usage = stdout
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_default();
    assert!(usage.contains(both), "{usage}");
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
    // Learned for the size it ran (64x64x9), which a plan of that size
    // uses; the size-less rate only moves from the seeded one.
    let learned = text
        .lines()
        .find(|l| l.contains("model: tiny, flavor: cpu, tp: 1, pixel_frames: 36864,"))
        .unwrap_or_else(|| panic!("no tiny-on-cpu rate at 64x64x9: {text}"));
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

/// The report's nearest-rank quantile, computed again from the values.
fn nearest_rank(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// A `--jobs-out` file as rows of named cells (its cells here hold no
/// commas or quotes).
fn read_jobs(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("jobs csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

/// A fleet of `nodes` nodes of one nvidia-l4 each.
fn l4_fleet(dir: &Path, nodes: u32) -> String {
    write(
        dir,
        &format!("fleet-{nodes}.yaml"),
        &format!("pools:\n  - {{flavor: nvidia-l4, nodes: {nodes}, devices_per_node: 1, price_per_device_hour: 0.8}}\n"),
    )
}

/// The tiny preset at 1 step/s on nvidia-l4.
fn l4_profile(dir: &Path) -> String {
    write(
        dir,
        "profile.yaml",
        "rates:\n  - { model: tiny, flavor: nvidia-l4, tp: 1, steps_per_s: 1.0 }\n",
    )
}

/// Work for about 10 devices at 1 step/s: a job of 20 steps every 2 s
/// for 20 minutes, in two classes.
fn ten_devices_of_work(dir: &Path) -> String {
    let rows: Vec<String> = (0..600)
        .map(|i| {
            let qos = if i % 3 == 0 {
                "interactive"
            } else {
                "standard"
            };
            format!("{},default,{qos},tiny,17,256x256,20,1", f64::from(i) * 2.0)
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    trace_of(dir, &rows)
}

/// `genfleet plan` with these arguments, its stdout, and the JSON it
/// wrote to `json` (which the arguments name).
fn plan_json(args: &[&str], json: &Path) -> (bool, String, serde_json::Value) {
    let (ok, stdout, stderr) = cli(args);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let text = std::fs::read(json).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (ok, stdout, serde_json::from_slice(&text).expect("json"))
}

/// A sweep over fleets from hopeless to ample: the same table on one
/// thread or three; the hopeless ones stopped early and shown as lower
/// bounds, never chosen.
#[test]
fn a_sweep_runs_on_every_thread_and_abandons_hopeless_fleets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fleet, profile) = (l4_fleet(dir.path(), 12), l4_profile(dir.path()));
    let trace = ten_devices_of_work(dir.path());
    let out = dir.path().join("out");
    let sweep = |jobs: &str| {
        let (ok, stdout, stderr) = cli(&[
            "plan",
            "--fleet",
            &fleet,
            "--trace",
            &trace,
            "--profile",
            &profile,
            "--target",
            "standard.p95_wait<=1m",
            "--sweep",
            "nvidia-l4=4..13",
            "--jobs",
            jobs,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        assert!(ok, "{stderr}");
        // All but the line with the wall time.
        let table: Vec<String> = stdout
            .lines()
            .filter(|l| !l.contains(" s on "))
            .map(str::to_string)
            .collect();
        (table, stdout)
    };
    let (one, stdout) = sweep("1");
    let (three, _) = sweep("3");
    assert_eq!(one, three, "the thread count changes nothing");
    let rows: Vec<&String> = one
        .iter()
        .filter(|l| l.starts_with("nvidia-l4 x"))
        .collect();
    assert_eq!(rows.len(), 10, "{stdout}");
    let abandoned: Vec<&&String> = rows.iter().filter(|r| r.contains(">=")).collect();
    assert!(
        abandoned.len() >= 3 && abandoned.iter().any(|r| r.starts_with("nvidia-l4 x4 ")),
        "the smallest fleets are stopped early: {stdout}"
    );
    for row in &abandoned {
        assert!(row.contains("<=0/1"), "{row}");
    }
    let chosen = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cheapest fleet that meets every target: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let nodes: u32 = chosen
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{chosen}"));
    let row = rows
        .iter()
        .find(|r| r.starts_with(&format!("nvidia-l4 x{nodes} ")))
        .unwrap_or_else(|| panic!("no row for {nodes}: {stdout}"));
    assert!(!row.contains(">=") && row.contains("1/1"), "{row}");
    // Every smaller fleet misses.
    for smaller in 4..nodes {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("nvidia-l4 x{smaller} ")))
            .unwrap_or_else(|| panic!("{smaller}"));
        assert!(!row.contains(" 1/1 "), "{row}");
    }
    // The JSON says where each abandoned run stopped, before the last
    // arrival (1198 s) for the smallest.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).expect("sweep.json"))
            .expect("json");
    let points = json.as_array().expect("points");
    let stopped = points[0]["abandoned"]["at_s"]
        .as_f64()
        .expect("x4 abandoned");
    assert!(stopped < 1198.0, "{stopped}");
    assert!(points.iter().any(|p| p.get("abandoned").is_none()));
}

/// A single run's jobs, one row each: the report's quantiles and
/// P(wait > 0) computed again from the file are the report's.
#[test]
fn jobs_out_rows_add_up_to_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 9 devices for 10 devices of work: most jobs wait.
    let (fleet, profile) = (l4_fleet(dir.path(), 9), l4_profile(dir.path()));
    let trace = ten_devices_of_work(dir.path());
    let jobs_csv = dir.path().join("jobs.csv");
    let json_path = dir.path().join("report.json");
    let (_, stdout, json) = plan_json(
        &[
            "plan",
            "--fleet",
            &fleet,
            "--trace",
            &trace,
            "--profile",
            &profile,
            "--jobs-out",
            jobs_csv.to_str().expect("utf-8"),
            "--json",
            json_path.to_str().expect("utf-8"),
        ],
        &json_path,
    );
    assert!(stdout.contains("P(WAIT>0)"), "{stdout}");
    let rows = read_jobs(&jobs_csv);
    assert_eq!(rows.len(), 600);
    assert!(rows
        .iter()
        .all(|r| r["flavor"] == "nvidia-l4" && r["tp"] == "1"));
    for class in json["classes"].as_array().expect("classes") {
        let name = class["name"].as_str().expect("name");
        let waits: Vec<f64> = rows
            .iter()
            .filter(|r| r["qos"] == name)
            .map(|r| r["wait_s"].parse().expect("every job started"))
            .collect();
        assert_eq!(class["jobs"].as_u64(), Some(waits.len() as u64));
        for (q, key) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            assert_eq!(
                class["wait_s"][key].as_f64(),
                Some(nearest_rank(waits.clone(), q)),
                "{name} {key}"
            );
        }
        let waited = waits.iter().filter(|w| **w > 0.010).count() as f64 / waits.len() as f64;
        assert_eq!(class["waited"].as_f64(), Some(waited), "{name}");
        // Interactive work goes first; standard work waits for it.
        let least = if name == "standard" { 0.5 } else { 0.01 };
        assert!(waited > least, "{name}: the fleet is short: {waited}");
        let row_of_class = rows.iter().find(|r| r["qos"] == name).expect("a row");
        let e2e: f64 = row_of_class["end_s"].parse::<f64>().expect("end")
            - row_of_class["arrival_s"].parse::<f64>().expect("arrival");
        assert!(e2e >= 20.0 - 1e-9, "20 steps at 1 step/s: {e2e}");
    }
}

/// The figures of a report's class (`classes[i]` with that name).
fn class<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no class {name}: {report}"))
}

/// Replications of a generated workload: successive seeds, every
/// percentile with an interval about the replications' mean, each target
/// met in K of N, and the jobs of every replication in the file, adding
/// up to each replication's report.
#[test]
fn replications_of_a_generated_workload_give_intervals_and_verdict_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 11 devices for 10 devices' worth of work (1,800 jobs of 20 s an hour).
    let (fleet, profile) = (l4_fleet(dir.path(), 11), l4_profile(dir.path()));
    let mix = "mix: [{ weight: 1, model: tiny, frames: 17, size: 256x256, steps: 20, tp: 1 }]";
    let workload = write(
        dir.path(),
        "workload.yaml",
        &format!("seed: 7\nduration: 2h\nstreams:\n  - {{ queue: default, qos: standard, rate_per_hour: 1500, {mix} }}\n  - {{ queue: default, qos: interactive, rate_per_hour: 300, {mix} }}\n"),
    );
    let jobs_csv = dir.path().join("jobs.csv");
    let json_path = dir.path().join("summary.json");
    let (ok, stdout, summary) = plan_json(
        &[
            "plan",
            "--fleet",
            &fleet,
            "--generate",
            &workload,
            "--profile",
            &profile,
            "--target",
            "standard.p95_wait<=1m",
            "--replications",
            "5",
            "--jobs-out",
            jobs_csv.to_str().expect("utf-8"),
            "--json",
            json_path.to_str().expect("utf-8"),
        ],
        &json_path,
    );
    assert!(stdout.contains("5 replications: seeds 7..=11"), "{stdout}");
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 5);
    let p95s: Vec<f64> = runs
        .iter()
        .map(|r| class(r, "standard")["wait_s"]["p95"].as_f64().expect("p95"))
        .collect();
    assert!(
        p95s.iter().any(|p| *p != p95s[0]),
        "other seeds, other waits: {p95s:?}"
    );
    // Independent replications: the estimate is their mean, inside its interval.
    let p95 = &class(&summary, "standard")["wait_s"]["p95"];
    let mean = p95s.iter().sum::<f64>() / 5.0;
    let (low, estimate, high) = (
        p95["low"].as_f64().expect("low"),
        p95["estimate"].as_f64().expect("estimate"),
        p95["high"].as_f64().expect("high"),
    );
    assert!((estimate - mean).abs() < 1e-9, "{estimate} vs {mean}");
    assert!(low < estimate && estimate < high, "{p95}");
    let met = runs
        .iter()
        .filter(|r| r["targets"][0]["met"].as_bool() == Some(true))
        .count();
    assert!(
        stdout.contains(&format!("standard.p95_wait<=60s: met in {met} of 5")),
        "{stdout}"
    );
    assert_eq!(ok, met == 5, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("standard") && l.contains("wait p95"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains('(') && line.contains(".."), "{line}");
    // Every replication's jobs, in order, adding up to its report.
    let rows = read_jobs(&jobs_csv);
    for (r, run) in runs.iter().enumerate() {
        let mine: Vec<_> = rows
            .iter()
            .filter(|row| row["replication"] == (r + 1).to_string())
            .collect();
        assert_eq!(
            Some(mine.len() as u64),
            run["jobs"].as_u64(),
            "replication {}",
            r + 1
        );
        let waits: Vec<f64> = mine
            .iter()
            .filter(|row| row["qos"] == "standard")
            .map(|row| row["wait_s"].parse().expect("started"))
            .collect();
        assert_eq!(nearest_rank(waits, 0.95), p95s[r], "replication {}", r + 1);
    }
}

/// A trace is resampled by blocks: replication 1 is the trace itself (the
/// single run's figures, which are the estimates), the others differ.
#[test]
fn replications_of_a_trace_are_the_trace_then_block_resamples() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().expect("tempdir");
    let (fleet, profile) = (l4_fleet(dir.path(), 11), l4_profile(dir.path()));
    // Two hours of Poisson arrivals, a job every 2 s on average.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut t = 0.0;
    let rows: Vec<String> = (0..3600)
        .map(|_| {
            t += -(1.0 - rng.random::<f64>()).ln() * 2.0;
            let steps = rng.random_range(10..30);
            format!("{t:.3},default,standard,tiny,17,256x256,{steps},1")
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let trace = trace_of(dir.path(), &rows);
    let plan = |extra: &[&str], json: &Path| {
        let mut args = vec![
            "plan",
            "--fleet",
            &fleet,
            "--trace",
            &trace,
            "--profile",
            &profile,
            "--json",
            json.to_str().expect("utf-8"),
        ];
        args.extend(extra);
        let (_, stdout, json) = plan_json(&args, json);
        (stdout, json)
    };
    let (_, single) = plan(&[], &dir.path().join("single.json"));
    let (stdout, summary) = plan(
        &["--replications", "4", "--jobs", "2"],
        &dir.path().join("summary.json"),
    );
    assert!(stdout.contains("local block bootstrap"), "{stdout}");
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(
        runs[0]["classes"], single["classes"],
        "replication 1 is the trace"
    );
    let p95 = |r: &serde_json::Value| class(r, "standard")["wait_s"]["p95"].clone();
    assert_eq!(
        class(&summary, "standard")["wait_s"]["p95"]["estimate"],
        p95(&single),
        "the estimate is the trace's own figure"
    );
    assert!(
        runs[1..].iter().any(|r| p95(r) != p95(&single)),
        "resamples differ from the trace"
    );
}

#[test]
fn replications_refuse_what_they_cannot_do() {
    let (fleet, queues, trace) = (
        example("fleet.yaml"),
        example("queues.yaml"),
        example("trace.csv"),
    );
    let base = [
        "plan", "--fleet", &fleet, "--queues", &queues, "--trace", &trace,
    ];
    for (extra, expected) in [
        (
            vec![
                "--replications",
                "3",
                "--sweep",
                "nvidia-l4=1..2",
                "--target",
                "interactive.p95_wait<=30s",
            ],
            "--replications runs one fleet",
        ),
        (
            vec![
                "--sweep",
                "nvidia-l4=1..2",
                "--target",
                "interactive.p95_wait<=30s",
                "--jobs-out",
                "x.csv",
            ],
            "--jobs-out writes the jobs of one fleet",
        ),
        (vec!["--replications", "0"], "--replications"),
        (vec!["--jobs", "0"], "--jobs"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (ok, _, stderr) = cli(&args);
        assert!(!ok && stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

/// Node failures given per pool in the fleet file reach the simulation:
/// nodes fail, jobs run longer end to end than on a fleet that never
/// fails, the same seed gives the same plan and another seed another.
#[test]
fn a_fleet_file_that_says_how_nodes_fail_makes_them_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = ten_devices_of_work(dir.path());
    let profile = l4_profile(dir.path());
    let healthy = l4_fleet(dir.path(), 14);
    let failing = write(
        dir.path(),
        "failing.yaml",
        "pools:\n  - {flavor: nvidia-l4, nodes: 14, devices_per_node: 1, price_per_device_hour: 0.8, node_mtbf: 20m, repair_time: 10m}\n",
    );
    let run = |fleet: &str, seed: &str, name: &str| {
        let json = dir.path().join(name);
        let json_arg = json.to_string_lossy().into_owned();
        let args = [
            "plan",
            "--fleet",
            fleet,
            "--trace",
            &trace,
            "--profile",
            &profile,
            "--json",
            &json_arg,
            "--failure-seed",
            seed,
        ];
        let (ok, stdout, report) = plan_json(&args, &json);
        assert!(ok);
        (report, stdout)
    };
    let (calm, calm_said) = run(&healthy, "0", "calm.json");
    let (rough, rough_said) = run(&failing, "0", "rough.json");
    let (again, _) = run(&failing, "0", "again.json");
    let (other, _) = run(&failing, "1", "other.json");
    assert!(!calm_said.contains("node failures"), "{calm_said}");
    assert!(rough_said.contains("node failures: "), "{rough_said}");
    let e2e_p95 = |r: &serde_json::Value| {
        class(r, "standard")["end_to_end_s"]["p95"]
            .as_f64()
            .expect("p95")
    };
    assert!(
        e2e_p95(&rough) > e2e_p95(&calm),
        "failures cost time: {} against {}",
        e2e_p95(&rough),
        e2e_p95(&calm)
    );
    assert_eq!(rough, again, "the same seed, the same failures");
    assert_ne!(rough, other, "another seed, other failures");
}

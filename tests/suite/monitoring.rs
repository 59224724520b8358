//! The monitoring overlay (deploy/overlays/monitoring and the dashboard in
//! deploy/grafana) against the real tools: promtool checks the alert rules
//! and runs their unit tests; every alert links to its section of
//! docs/runbook.md; a live Prometheus scrapes a local cluster (three
//! scheduler replicas, a worker with recorded AMD GPU telemetry, a worker
//! with a simulated NVIDIA GPU) while jobs run and evaluates every
//! expression of the dashboard, the rules and the runbook; every metric they
//! name must be one the processes export, and every /metrics must pass
//! `promtool check metrics`.
//! Without promtool or prometheus (Debian's `prometheus` package) the tests
//! are skipped, unless GENFLEET_REQUIRE_TOOLS=1.

use crate::common;
// The tool finder the manifest tests use: PATH, then the test-tools venv.
use crate::deploy_manifests::tools::{self, read_repo_file};
use crate::deploy_manifests::{overlay_objects, repo_from};

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Instant;

use common::prometheus::runbook::{
    github_anchor, headings, promql_blocks, runbook_part, runbook_sections, RUNBOOK_PARTS,
};
use common::prometheus::{
    exported_names, metric_names, poll, promtool_check_metrics, selectors, url_encode, Prometheus,
    ScrapeJob,
};
use common::replicas::Replicas;
use common::{small_spec, submit, watch_to_end, watch_until};
use genfleet_proto as pb;
use serde_yaml_ng::Value as Yaml;

const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/overlays/monitoring");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/genfleet-dashboard.json"
);
const RUNBOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/runbook.md");
/// The namespace label the live test's scrapes add, as the Prometheus
/// Operator does for a PodMonitor's targets. They add no `cluster` label:
/// a single-cluster Prometheus has none.
const NAMESPACE: &str = "genfleet-test";

/// Metrics that have series only where the leader watches Kubernetes Nodes
/// (one per Node it checked), so a local cluster cannot show them: for these
/// the drift check reads the scheduler's metric definitions instead.
const ONLY_WITH_KUBERNETES: [&str; 1] = ["genfleet_kube_node_label_mismatch"];
/// Series Prometheus makes itself for every target.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// `name`'s path; None (a skip) or a failure under GENFLEET_REQUIRE_TOOLS=1
/// when it is missing.
fn require_tool(name: &str) -> Option<std::path::PathBuf> {
    tools::required(name, tools::find_tool(name))
}

/// The PrometheusRule's `spec`: its rule groups, as promtool reads them.
fn rule_groups() -> Yaml {
    let path = format!("{MONITORING}/prometheusrule.yaml");
    let rule: Yaml =
        serde_yaml_ng::from_str(&read_repo_file(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"), "{path}");
    rule["spec"].clone()
}

/// Every rule of the groups, mutably (to edit a copy).
fn rules_mut(groups: &mut Yaml) -> impl Iterator<Item = &mut Yaml> {
    let groups = groups["groups"].as_sequence_mut().expect("spec.groups");
    groups.iter_mut().flat_map(|g| {
        g["rules"]
            .as_sequence_mut()
            .expect("each group has rules")
            .iter_mut()
    })
}

/// (alert name, expression) of every alerting rule.
fn alerts(groups: &Yaml) -> Vec<(String, String)> {
    let mut groups = groups.clone();
    rules_mut(&mut groups)
        .map(|r| {
            let name = r["alert"].as_str().expect("an alerting rule").to_string();
            let expr = r["expr"].as_str().expect("an expr").to_string();
            (name, expr)
        })
        .collect()
}

fn run_ok(mut command: Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let groups = rule_groups();
    let full = dir.path().join("full-rules.yaml");
    std::fs::write(&full, serde_yaml_ng::to_string(&groups).expect("yaml")).expect("write");
    let mut check = Command::new(&promtool);
    check.arg("check").arg("rules").arg(&full);
    run_ok(check, "promtool check rules on the PrometheusRule's spec");

    // The unit tests assert each alert's labels and summary; descriptions
    // (operator prose, whose templates `check rules` parsed) and runbook
    // links (checked against the runbook below) are left out.
    let mut tested = groups.clone();
    for rule in rules_mut(&mut tested) {
        if let Some(annotations) = rule["annotations"].as_mapping_mut() {
            annotations.remove("description");
            annotations.remove("runbook_url");
        }
    }
    let rules = dir.path().join("genfleet-rules.yaml");
    std::fs::write(&rules, serde_yaml_ng::to_string(&tested).expect("yaml")).expect("write");
    let mut files = Vec::new();
    let tests_dir = format!("{MONITORING}/tests");
    for entry in std::fs::read_dir(&tests_dir).expect("the unit tests' directory") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("a file name").to_owned();
        if name.to_string_lossy().ends_with(".test.yaml") {
            std::fs::copy(&path, dir.path().join(&name)).expect("copy a unit test");
            files.push(name);
        }
    }
    files.sort();
    let mut test = Command::new(&promtool);
    test.current_dir(dir.path())
        .args(["test", "rules"])
        .args(&files);
    run_ok(test, "promtool test rules");

    let coverage = unit_test_coverage(&tests_dir);
    for (alert, _) in alerts(&groups) {
        let (fires, quiet) = coverage.get(&alert).copied().unwrap_or_default();
        assert!(
            fires && quiet,
            "alert {alert} needs unit tests in {tests_dir} where it fires and where it stays quiet (fires: {fires}, quiet: {quiet})"
        );
    }
}

/// Per alert name: whether some unit test expects it to fire, and whether
/// some test expects it quiet.
fn unit_test_coverage(tests_dir: &str) -> BTreeMap<String, (bool, bool)> {
    let mut coverage: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for entry in std::fs::read_dir(tests_dir).expect("the unit tests' directory") {
        let path = entry.expect("dir entry").path();
        let text = read_repo_file(&path);
        let file: Yaml =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let cases = file["tests"].as_sequence().into_iter().flatten();
        for case in cases.flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten()) {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let fires = case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty());
            let entry = coverage.entry(name).or_default();
            if fires {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    coverage
}

/// The base of every runbook link: `data.url` of runbook-url.yaml.
fn runbook_base() -> String {
    let path = format!("{MONITORING}/runbook-url.yaml");
    let config: Yaml =
        serde_yaml_ng::from_str(&read_repo_file(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let url = config["data"]["url"].as_str();
    url.unwrap_or_else(|| panic!("{path}: no data.url"))
        .to_string()
}

/// Every alert's runbook_url is the configured base and the anchor of a
/// section named after the alert, and that section says what the alert
/// means, what to check (with commands or queries to run) and what to do.
#[test]
fn every_alert_links_to_a_runbook_section_on_what_to_check_and_do() {
    let markdown = read_repo_file(RUNBOOK);
    let sections = runbook_sections(&markdown);
    let anchors: BTreeSet<String> = headings(&markdown)
        .iter()
        .map(|(_, text)| github_anchor(text))
        .collect();
    let base = runbook_base();
    let mut groups = rule_groups();
    let mut linked = BTreeSet::new();
    for rule in rules_mut(&mut groups) {
        let alert = rule["alert"]
            .as_str()
            .expect("an alerting rule")
            .to_string();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("alert {alert} has no runbook_url annotation"));
        let (url_base, anchor) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("alert {alert}: runbook_url {url} has no #anchor"));
        assert_eq!(
            url_base, base,
            "alert {alert}: runbook_url's base differs from runbook-url.yaml's url (the replacement rewrites only what is before '#')"
        );
        assert_eq!(
            anchor,
            alert.to_lowercase(),
            "alert {alert}: the anchor is its name in lower case"
        );
        let section = sections.get(anchor).unwrap_or_else(|| {
            panic!("alert {alert}: docs/runbook.md has no section `## {alert}` (anchor #{anchor})")
        });
        let mut parts = BTreeMap::new();
        for label in RUNBOOK_PARTS {
            let part = runbook_part(section, label).unwrap_or_else(|| {
                panic!("docs/runbook.md, section {alert}: no paragraph starting **{label}**")
            });
            assert!(
                part.split_whitespace().count() >= 8,
                "docs/runbook.md, section {alert}: part {label:?} says too little: {part:?}"
            );
            parts.insert(label, part);
        }
        let check = parts["What to check."];
        assert!(
            check.contains("```sh") || check.contains("```promql"),
            "docs/runbook.md, section {alert}: what to check gives no command or query to run"
        );
        linked.insert(anchor.to_string());
    }
    let orphans: Vec<&String> = sections
        .keys()
        .filter(|a| a.starts_with("genfleet") && !linked.contains(*a))
        .collect();
    assert!(
        orphans.is_empty(),
        "docs/runbook.md has sections for alerts that do not exist (renamed?): {orphans:?}"
    );
    // The runbook's links to its own sections lead somewhere.
    for link in markdown.split("](#").skip(1) {
        let target = link.split(')').next().unwrap_or_default();
        assert!(
            anchors.contains(target),
            "docs/runbook.md links to #{target}, which no heading makes"
        );
    }
}

#[test]
fn github_anchors_are_made_as_github_makes_them() {
    assert_eq!(
        github_anchor("GenfleetNoRaftLeader"),
        "genfleetnoraftleader"
    );
    assert_eq!(
        github_anchor("GPU series, DCGM and chargeback"),
        "gpu-series-dcgm-and-chargeback"
    );
    assert_eq!(
        github_anchor("Chargeback: device-hours per queue"),
        "chargeback-device-hours-per-queue"
    );
    let sections = runbook_sections("# T\n## A b\n```sh\n## not a heading\n```\nx\n## C\ny\n");
    let expected = [("a-b", "```sh\n## not a heading\n```\nx\n"), ("c", "y\n")];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(sections, expected);
}

/// The overlay as kubectl applies it: the sidecar's ConfigMap holds the
/// plain dashboard file unchanged, each PodMonitor selects the pods a
/// vendor overlay runs, on a port those pods name, and every alert's
/// runbook link starts with the base runbook-url.yaml sets.
#[test]
fn the_overlay_ships_the_dashboard_file_and_monitors_the_genfleet_pods() {
    let Some(kubectl) = tools::kubectl() else {
        return;
    };
    let objects = overlay_objects(&kubectl, "monitoring");
    let config_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "genfleet-dashboard")
        .expect("the overlay renders ConfigMap genfleet-dashboard");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["genfleet-dashboard.json"].as_str(),
        Some(read_repo_file(DASHBOARD).as_str()),
        "the ConfigMap must carry deploy/grafana/genfleet-dashboard.json as it is"
    );
    assert_runbook_links_start_with(objects, &runbook_base());
    assert_monitors_select(objects, overlay_objects(&kubectl, "nvidia"));
}

/// Every alert of the rendered `objects` links to `base#...`, and the
/// ConfigMap that holds the base stays out of what is applied.
fn assert_runbook_links_start_with(objects: &[serde_json::Value], base: &str) {
    let local = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "genfleet-runbook");
    assert!(
        local.is_none(),
        "runbook-url.yaml is local configuration and must not be applied: {local:?}"
    );
    let rule = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the overlay renders the PrometheusRule");
    let rules = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten());
    let mut links = 0;
    for rule in rules {
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
        let alert = &rule["alert"];
        let anchor = alert.as_str().unwrap_or("").to_lowercase();
        assert_eq!(url, format!("{base}#{anchor}"), "alert {alert}");
        links += 1;
    }
    assert_eq!(
        links,
        alerts(&rule_groups()).len(),
        "every alert has a link"
    );
}

/// The runbook base is set in one place: a kustomization that sets
/// another URL in runbook-url.yaml gets it in every alert, anchors kept.
#[test]
fn the_runbook_base_is_set_once_for_every_alert() {
    let Some(kubectl) = tools::kubectl() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The overlay copied, with its one reference outside it pointing back
    // into the repository (kustomize takes only relative paths: climb to /).
    for file in ["podmonitors.yaml", "prometheusrule.yaml"] {
        std::fs::copy(format!("{MONITORING}/{file}"), dir.path().join(file)).expect("copy");
    }
    let grafana = format!("{}/deploy/grafana", repo_from(dir.path()));
    let kustomization = read_repo_file(format!("{MONITORING}/kustomization.yaml"));
    assert!(kustomization.contains("../../grafana"), "{kustomization}");
    let kustomization = kustomization.replace("../../grafana", &grafana);
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
    let base = "https://docs.example.com/genfleet/runbook.md";
    let config = read_repo_file(format!("{MONITORING}/runbook-url.yaml"));
    let config = config.replace(&runbook_base(), base);
    std::fs::write(dir.path().join("runbook-url.yaml"), config).expect("write");
    let objects = tools::documents(&tools::render(&kubectl, dir.path()));
    assert_runbook_links_start_with(&objects, base);
}

/// The dashboard's template variables and what reads them: panels have
/// distinct ids and read the `${datasource}` variable; the cluster and
/// namespace variables (each "All" by default, which matches a series
/// without the label too) filter every selector of every panel and of the
/// other variables.
#[test]
fn the_dashboard_filters_every_query_by_its_variables() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read_repo_file(DASHBOARD)).expect("JSON");
    let list = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let variables: Vec<&str> = list.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(
        variables,
        [
            "datasource",
            "cluster",
            "namespace",
            "queue",
            "flavor",
            "node"
        ]
    );
    assert_eq!(list[0]["type"], "datasource");
    assert_eq!(list[0]["query"], "prometheus");
    let filters = [r#"namespace=~"$namespace""#, r#"cluster=~"$cluster""#];
    let unfiltered = |expr: &str, wanted: &[&str]| -> Vec<String> {
        selectors(expr)
            .into_iter()
            .filter(|s| wanted.iter().any(|f| !s.matchers.contains(f)))
            .map(|s| format!("{}{{{}}}", s.name, s.matchers))
            .collect()
    };
    for var in &list[1..] {
        let name = var["name"].as_str().unwrap_or("?");
        assert_eq!(var["type"], "query", "variable {name}");
        assert_eq!(var["datasource"]["uid"], "${datasource}", "variable {name}");
        assert_eq!(var["includeAll"], true, "variable {name}");
        assert_eq!(
            var["allValue"], ".*",
            "variable {name}: All must match series without the label"
        );
        let query = var["query"]["query"].as_str().unwrap_or_default();
        let wanted: &[&str] = match name {
            "cluster" => &[],
            "namespace" => &filters[1..],
            _ => &filters,
        };
        let args = query.strip_prefix("label_values(").unwrap_or_default();
        let (selector, _label) = args.rsplit_once(',').unwrap_or_default();
        let missing = unfiltered(selector, wanted);
        assert!(
            missing.is_empty(),
            "variable {name} reads {missing:?} unfiltered by {wanted:?}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut stack = vec![&dashboard];
    while let Some(node) = stack.pop() {
        for panel in node["panels"].as_array().into_iter().flatten() {
            stack.push(panel);
            assert!(
                ids.insert(panel["id"].to_string()),
                "two panels with id {}",
                panel["id"]
            );
            let sources = [&panel["datasource"]].into_iter().chain(
                panel["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| &t["datasource"]),
            );
            for source in sources.filter(|_| panel["type"] != "row") {
                assert_eq!(source["uid"], "${datasource}", "panel {}", panel["title"]);
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let missing = unfiltered(expr, &filters);
                assert!(
                    missing.is_empty(),
                    "panel {}: {missing:?} not filtered by {filters:?}",
                    panel["title"]
                );
            }
        }
    }
}

/// Each PodMonitor of `objects` selects the pods of a workload of `pods`
/// and scrapes a port their container names.
fn assert_monitors_select(objects: &[serde_json::Value], pods: &[serde_json::Value]) {
    let monitors: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "PodMonitor")
        .collect();
    assert_eq!(
        monitors.len(),
        2,
        "PodMonitors for the scheduler and the workers"
    );
    for monitor in monitors {
        let name = &monitor["metadata"]["name"];
        let wanted = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels");
        let port = &monitor["spec"]["podMetricsEndpoints"][0]["port"];
        let selected = pods
            .iter()
            .filter(|o| ["StatefulSet", "DaemonSet"].contains(&o["kind"].as_str().unwrap_or("")))
            .find(|o| {
                let template = &o["spec"]["template"];
                let labels = &template["metadata"]["labels"];
                wanted.iter().all(|(k, v)| &labels[k] == v)
            });
        let workload = selected
            .unwrap_or_else(|| panic!("PodMonitor {name} selects no pod of overlays/nvidia"));
        let containers = workload["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        let named = containers
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .any(|p| &p["name"] == port);
        assert!(
            named,
            "PodMonitor {name} scrapes port {port}, which {} does not name",
            workload["metadata"]["name"]
        );
    }
}

/// A dashboard query: the panel's title and its expression.
struct PanelQuery {
    panel: String,
    expr: String,
}

/// Every target expression of the dashboard's panels (rows included), and
/// the metrics its template variables take their values from.
fn dashboard_queries() -> (Vec<PanelQuery>, Vec<(String, String)>) {
    let dashboard: serde_json::Value = serde_json::from_str(&read_repo_file(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let mut queries = Vec::new();
    let mut stack: Vec<&serde_json::Value> = vec![&dashboard];
    while let Some(node) = stack.pop() {
        for panel in node["panels"].as_array().into_iter().flatten() {
            stack.push(panel);
            for target in panel["targets"].as_array().into_iter().flatten() {
                queries.push(PanelQuery {
                    panel: panel["title"].as_str().unwrap_or("?").to_string(),
                    expr: target["expr"]
                        .as_str()
                        .expect("a prometheus target")
                        .to_string(),
                });
            }
        }
    }
    // `label_values(metric, label)`: the variable's values.
    let mut variables = Vec::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let query = var["query"]["query"].as_str().or(var["query"].as_str());
        if let Some(args) = query.and_then(|q| q.strip_prefix("label_values(")) {
            // The selector may hold commas of its own: the label is last.
            let (metric, label) = args
                .trim_end_matches(')')
                .rsplit_once(',')
                .expect("label_values(metric, label)");
            variables.push((metric.trim().to_string(), label.trim().to_string()));
        }
    }
    (queries, variables)
}

/// `expr` as Grafana sends it with the test's namespace chosen, every
/// other variable at "All" (`.*`, which also matches the `cluster` label
/// the scrapes here do not have) and a one-minute rate interval.
fn concrete(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$namespace", NAMESPACE)
        .replace("$cluster", ".*")
        .replace("$queue", ".*")
        .replace("$flavor", ".*")
        .replace("$node", ".*");
    assert!(
        !expr.contains('$'),
        "a dashboard variable this test does not know: {expr}"
    );
    expr
}

/// Two queues that make jobs wait for a reason: one without quota, one
/// whose budget (36 ms of a device a day) the first job uses up; `render`
/// for the simulated GPU, and `default` kept off it.
const QUEUES: &str = "name: capped\nquotas:\n  cpu: { nominal: 0 }\n---\nname: tight\nquotas:\n  cpu: { nominal: 1 }\nbudget: { device_hours: 0.00001, period: 1day }\n---\nname: render\nquotas:\n  nvidia-l4: { nominal: 1 }\n---\nname: default\nquotas:\n  cpu: { nominal: 1 }\n";

/// The simulated GPU's flavor: the seeded profile has no rate for the
/// `world` model on it, so the leader estimates 1 step/s and a job of 200
/// steps holds the GPU for minutes, unless cancelled.
const GPU_FLAVOR: &str = "nvidia-l4";

/// A local cluster with metrics: three scheduler replicas, a worker on the
/// recorded MI300X node's sysfs and a worker with a simulated NVIDIA GPU;
/// jobs have run and others wait.
struct Cluster {
    replicas: Replicas,
    _workers: [common::Proc; 2],
    amd_worker_metrics: String,
    gpu_worker_metrics: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        // Kubernetes off: a developer's kubeconfig must not switch it on.
        let flags = ["--metrics-listen", "127.0.0.1:0", "--kubernetes", "off"];
        let replicas = Replicas::new(3, &flags);
        replicas.converged(&[1, 2, 3]).await;
        let all: Vec<String> = (1..=3).map(|id| replicas.endpoint(id)).collect();
        let all = all.join(",");
        let dir = tempfile::tempdir().expect("tempdir");
        common::apply_queues(&all, dir.path(), QUEUES);
        let models = dir.path().join("models");
        common::init_model(&models);
        let sysfs = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/worker/tests/fixtures/sysfs/mi300x-node"
        );
        let artifacts = dir.path().join("artifacts");
        let (worker, metrics) = common::start_worker_with(
            &all,
            "mi300x-node",
            &models,
            &artifacts,
            &["--sysfs-root", sysfs, "--metrics-listen", "127.0.0.1:0"],
        );
        let simulate = format!("{GPU_FLAVOR}:1");
        let (gpu_worker, gpu_metrics) = common::start_worker_with(
            &all,
            "l4-node",
            &models,
            &artifacts,
            &["--simulate", &simulate, "--metrics-listen", "127.0.0.1:0"],
        );
        Cluster {
            replicas,
            _workers: [worker, gpu_worker],
            amd_worker_metrics: metrics.expect("the worker's metrics url"),
            gpu_worker_metrics: gpu_metrics.expect("the GPU worker's metrics url"),
            _dir: dir,
        }
    }

    /// Runs a standard, an interactive and a budgeted job to the end, and
    /// leaves one job over quota and one over budget pending.
    async fn run_jobs(&self) {
        let mut jobs = self.replicas.leader_client().await;
        let in_queue = |queue: &str, seed| pb::JobSpec {
            queue: queue.into(),
            ..small_spec("a heron in the rain", seed)
        };
        let interactive = pb::JobSpec {
            qos: "interactive".into(),
            ..small_spec("a quick preview", 2)
        };
        let capped = submit(&mut jobs, in_queue("capped", 1)).await;
        let spender = submit(&mut jobs, in_queue("tight", 3)).await;
        let over_budget = submit(&mut jobs, in_queue("tight", 4)).await;
        let standard = submit(&mut jobs, small_spec("a plain heron", 5)).await;
        let interactive = submit(&mut jobs, interactive).await;
        for job in [&spender, &standard, &interactive] {
            let (done, _) = watch_to_end(&mut jobs, &job.id, 120).await;
            assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
        }
        let waits = [
            (
                &capped,
                "over quota",
                "the capped queue's job waits over quota",
            ),
            (
                &over_budget,
                "budget",
                "the tight queue's second job waits for its budget",
            ),
        ];
        for (job, reason, what) in waits {
            watch_until(&mut jobs, &job.id, what, |j| {
                j.pending_reason.contains(reason)
            })
            .await;
        }
    }

    /// Starts a job of queue `render` on the simulated GPU and returns it
    /// once it runs; it holds the GPU until [`cancel`](Self::cancel).
    async fn start_gpu_job(&self) -> pb::Job {
        let mut jobs = self.replicas.leader_client().await;
        let spec = pb::JobSpec {
            queue: "render".into(),
            model: "world".into(),
            width: 64,
            height: 64,
            steps: 200,
            ..small_spec("a render that takes minutes", 6)
        };
        let job = submit(&mut jobs, spec).await;
        watch_until(
            &mut jobs,
            &job.id,
            "the render job runs on the simulated GPU",
            |j| j.state() == pb::JobState::Running && j.step >= 1,
        )
        .await
    }

    async fn cancel(&self, job: &pb::Job) {
        let mut jobs = self.replicas.leader_client().await;
        let cancel = jobs.cancel(pb::CancelJobRequest { id: job.id.clone() });
        common::within(30, "cancelling the render job", cancel)
            .await
            .expect("cancel accepted");
    }

    fn scheduler_metrics(&self) -> Vec<String> {
        self.replicas.metrics.values().cloned().collect()
    }

    fn worker_metrics(&self) -> [String; 2] {
        [
            self.amd_worker_metrics.clone(),
            self.gpu_worker_metrics.clone(),
        ]
    }

    /// Every process's /metrics URL.
    fn all_metrics(&self) -> Vec<String> {
        let mut urls = self.scheduler_metrics();
        urls.extend(self.worker_metrics());
        urls
    }

    /// Every metric name the processes export now.
    fn exported(&self) -> BTreeSet<String> {
        self.all_metrics()
            .into_iter()
            .flat_map(|url| exported_names(&common::http_get(&url)))
            .collect()
    }
}

fn host_port(metrics_url: &str) -> String {
    let rest = metrics_url.strip_prefix("http://").expect("an http url");
    rest.split('/').next().expect("host:port").to_string()
}

/// No drift: every metric the dashboard, the rules and the runbook name
/// is exported (or is DCGM's, which the runbook joins genfleet's to).
fn assert_names_are_exported(exported: &BTreeSet<String>, used: &BTreeMap<String, String>) {
    let definitions = read_repo_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scheduler/src/metrics.rs"
    ));
    for name in ONLY_WITH_KUBERNETES {
        assert!(
            !exported.contains(name),
            "{name} is exported without Kubernetes now: drop it from ONLY_WITH_KUBERNETES"
        );
        assert!(
            definitions.contains(&format!("\"{name}\"")),
            "{name} is not defined in scheduler/src/metrics.rs any more"
        );
    }
    for (name, used_by) in used {
        let known = exported.contains(name)
            || PROMETHEUS_SERIES.contains(&name.as_str())
            || ONLY_WITH_KUBERNETES.contains(&name.as_str())
            || name.starts_with("DCGM_");
        assert!(
            known,
            "{used_by} uses metric {name}, which neither the scheduler nor the worker exports (renamed or removed in scheduler/src/metrics.rs or worker/src/metrics.rs?)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_prometheus_evaluates_every_dashboard_and_alert_expression() {
    let (Some(binary), Some(promtool)) = (require_tool("prometheus"), require_tool("promtool"))
    else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("genfleet-rules.yaml");
    let groups = serde_yaml_ng::to_string(&rule_groups()).expect("yaml");
    std::fs::write(&rules, groups).expect("write the rules");
    let namespace = vec![("namespace".to_string(), NAMESPACE.to_string())];
    let jobs = [
        ScrapeJob {
            job: "genfleet-scheduler".into(),
            targets: cluster
                .scheduler_metrics()
                .iter()
                .map(|u| host_port(u))
                .collect(),
            labels: namespace.clone(),
        },
        ScrapeJob {
            job: "genfleet-worker".into(),
            targets: cluster
                .worker_metrics()
                .iter()
                .map(|u| host_port(u))
                .collect(),
            labels: namespace,
        },
    ];
    let prometheus = Prometheus::start(&binary, &jobs, &rules);
    cluster.run_jobs().await;
    let gpu_job = cluster.start_gpu_job().await;

    let (queries, variables) = dashboard_queries();
    let alerts = alerts(&rule_groups());
    let runbook = promql_blocks(&read_repo_file(RUNBOOK));
    let mut used = BTreeMap::new();
    for q in &queries {
        for name in metric_names(&q.expr) {
            used.insert(name, format!("dashboard panel {:?}", q.panel));
        }
    }
    for (metric, label) in &variables {
        for name in metric_names(metric) {
            used.insert(name, format!("dashboard variable over {label}"));
        }
    }
    for (alert, expr) in &alerts {
        for name in metric_names(expr) {
            used.insert(name, format!("alert {alert}"));
        }
    }
    for expr in &runbook {
        for name in metric_names(expr) {
            used.insert(name, format!("docs/runbook.md: {expr}"));
        }
    }
    assert_names_are_exported(&cluster.exported(), &used);

    let prometheus = &prometheus;
    tokio::task::block_in_place(|| {
        poll(30, || prometheus.targets_not_up(5));
        for (alert, expr) in &alerts {
            if let Err(e) = prometheus.query(expr) {
                panic!("alert {alert}: Prometheus refuses its expression: {e}\n{expr}");
            }
        }
        for expr in &runbook {
            if let Err(e) = prometheus.query(expr) {
                panic!("docs/runbook.md: Prometheus refuses {expr}: {e}");
            }
        }
        // The GPU job runs meanwhile: the assignment panels have data.
        poll(60, || panels_without_data(prometheus, &queries));
        for (metric, label) in &variables {
            let metric = concrete(metric);
            let path = format!(
                "/api/v1/label/{label}/values?match[]={}",
                url_encode(&metric)
            );
            // A single-cluster Prometheus has no cluster label: "All" only.
            let may_be_empty = label == "cluster";
            poll(10, || match prometheus.api(&path) {
                Ok(values) if may_be_empty || values.as_array().is_some_and(|v| !v.is_empty()) => {
                    None
                }
                other => Some(format!(
                    "dashboard variable {label} of {metric} has no values: {other:?}"
                )),
            });
        }
        assert_new_series(prometheus, &gpu_job);
        poll(30, || prometheus.rules_not_evaluated(alerts.len()));
        poll(30, || alerts_not_as_expected(prometheus));
        // With jobs run, budgets spent and a GPU held, every family a
        // process has is on its /metrics.
        for url in cluster.all_metrics() {
            promtool_check_metrics(&promtool, &url);
        }
    });
    cluster.cancel(&gpu_job).await;
    tokio::task::block_in_place(|| {
        let held = format!("genfleet_gpu_assignment{{job_id=\"{}\"}}", gpu_job.id);
        poll(30, || {
            let text = common::http_get(&cluster.gpu_worker_metrics);
            let left: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("genfleet_gpu_assignment{"))
                .collect();
            (!left.is_empty()).then(|| format!("the cancelled job still holds its GPU: {left:?}"))
        });
        poll(10, || match prometheus.query(&held) {
            Ok(series) if series.is_empty() => None,
            other => Some(format!(
                "Prometheus still has {held} after the job ended: {other:?}"
            )),
        });
    });
    eprintln!(
        "monitoring: {} dashboard, {} alert and {} runbook expressions evaluated in {:.0?}",
        queries.len(),
        alerts.len(),
        runbook.len(),
        started.elapsed()
    );
}

/// The GPU, build and process series, as Prometheus stores them: the
/// running job's hold on the simulated GPU; the ids the recorded AMD cards
/// give on their series (card 1 has no unique_id: an empty, so absent,
/// uuid); build_info and the process metrics of every process.
fn assert_new_series(prometheus: &Prometheus, gpu_job: &pb::Job) {
    let expected = [
        (
            format!(
                r#"genfleet_gpu_assignment{{job_id="{}", queue="render", vendor="nvidia", index="0", uuid="", pci_bus_id="", node="l4-node", namespace="{NAMESPACE}"}} == 1"#,
                gpu_job.id
            ),
            1,
        ),
        (
            r#"genfleet_worker_gpu_info{node="mi300x-node", vendor="amd", index="0", uuid="5a3cd9e10b6f7c42", pci_bus_id="00000000:05:00.0"}"#.to_string(),
            1,
        ),
        (
            r#"genfleet_worker_gpu_temperature_celsius{node="mi300x-node", index="1", uuid="", pci_bus_id="00000000:26:00.0"} == 38"#.to_string(),
            1,
        ),
        (
            format!(
                r#"genfleet_build_info{{version="{}"}} == 1"#,
                env!("CARGO_PKG_VERSION")
            ),
            5,
        ),
        ("process_resident_memory_bytes > 0".to_string(), 5),
        ("process_start_time_seconds > 0".to_string(), 5),
        ("process_cpu_seconds_total".to_string(), 5),
    ];
    for (expr, count) in expected {
        poll(10, || match prometheus.query(&expr) {
            Ok(series) if series.len() == count => None,
            other => Some(format!("{expr}: expected {count} series, got {other:?}")),
        });
    }
}

/// Alerts that must stay quiet in the healthy local cluster: they match
/// its real series (a leader, a connected worker) and find nothing wrong.
const QUIET_HERE: [&str; 4] = [
    "GenfleetNoRaftLeader",
    "GenfleetNoWorkersConnected",
    "GenfleetWorkerDisconnected",
    "GenfleetWorkerTargetsAbsent",
];

/// None once the alerts match what the cluster shows: the tight queue's
/// spent budget raises GenfleetQueueOverBudget (pending or firing), and
/// none of [`QUIET_HERE`] is active.
fn alerts_not_as_expected(prometheus: &Prometheus) -> Option<String> {
    let active = match prometheus.active_alerts() {
        Ok(active) => active,
        Err(e) => return Some(format!("no alerts from Prometheus: {e}")),
    };
    let over_budget = active
        .iter()
        .any(|a| a == "GenfleetQueueOverBudget{queue=tight}");
    let loud: Vec<&String> = active
        .iter()
        .filter(|a| QUIET_HERE.contains(&a.as_str()))
        .collect();
    (!over_budget || !loud.is_empty()).then(|| {
        format!(
            "expected GenfleetQueueOverBudget for queue tight (its budget is spent) and none of {QUIET_HERE:?} (the cluster has a leader and a connected worker); active: {active:?}"
        )
    })
}

/// None once every panel query returns data; fails at once on a query
/// Prometheus refuses.
fn panels_without_data(prometheus: &Prometheus, queries: &[PanelQuery]) -> Option<String> {
    let mut empty = Vec::new();
    for q in queries {
        let expr = concrete(&q.expr);
        match prometheus.query(&expr) {
            Ok(series) if series.is_empty() => {
                let needs_kube = ONLY_WITH_KUBERNETES.iter().any(|n| expr.contains(n));
                if !needs_kube {
                    empty.push(format!("{:?}: {expr}", q.panel));
                }
            }
            Ok(_) => {}
            Err(e) => panic!(
                "dashboard panel {:?}: Prometheus refuses {expr}: {e}",
                q.panel
            ),
        }
    }
    (!empty.is_empty()).then(|| {
        format!(
            "these panels return no data from a cluster that ran jobs (a label value the code never sets? a series created only on an event and not set to 0 at start?):\n{}",
            empty.join("\n")
        )
    })
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let expr = r#"histogram_quantile(0.9, sum by (qos, le) (rate(genfleet_job_wait_seconds_bucket{qos="interactive", x=~"a|b"}[5m]))) > 60
        and on (job, instance) genfleet_replica_role{role="leader"} == 1 or absent(up{job="w"}) unless scalar(genfleet_raft_term) offset 1h"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    let expected = [
        "genfleet_job_wait_seconds_bucket",
        "genfleet_raft_term",
        "genfleet_replica_role",
        "up",
    ];
    assert_eq!(names, expected);
    let found = selectors(r#"sum(a{x="}", y=~"b"}) / b + rate(c[5m])"#);
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|s| (s.name.as_str(), s.matchers.as_str()))
        .collect();
    assert_eq!(found, [("a", r#"x="}", y=~"b""#), ("b", ""), ("c", "")]);
}

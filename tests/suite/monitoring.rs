//! The monitoring overlay (deploy/overlays/monitoring and the dashboard in
//! deploy/grafana) against the real tools: promtool checks the alert rules
//! and runs their unit tests; a live Prometheus scrapes a local cluster
//! (three scheduler replicas, a worker with recorded AMD GPU telemetry) while
//! jobs run and evaluates every expression of the dashboard and the rules;
//! and every metric they name must be one the processes export.
//! Without promtool or prometheus (Debian's `prometheus` package) the tests
//! are skipped, unless GENFLEET_REQUIRE_TOOLS=1.

use crate::common;
// The tool finder the manifest tests use: PATH, then the test-tools venv.
use crate::deploy_manifests::tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::prometheus::{exported_names, metric_names, poll, Prometheus, ScrapeJob};
use common::replicas::Replicas;
use common::{client, small_spec, submit, watch_to_end, watch_until};
use genfleet_proto as pb;
use serde_yaml_ng::Value as Yaml;

/// The repository (tools.rs resolves the test-tools venv from it).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/overlays/monitoring");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/genfleet-dashboard.json"
);

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

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The PrometheusRule's `spec`: its rule groups, as promtool reads them.
fn rule_groups() -> Yaml {
    let path = format!("{MONITORING}/prometheusrule.yaml");
    let rule: Yaml =
        serde_yaml_ng::from_str(&read(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
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
    // (operator prose, whose templates `check rules` parsed) are left out.
    let mut tested = groups.clone();
    for rule in rules_mut(&mut tested) {
        if let Some(annotations) = rule["annotations"].as_mapping_mut() {
            annotations.remove("description");
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
        let text = read(&path.to_string_lossy());
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

/// The overlay as kubectl applies it: the sidecar's ConfigMap holds the
/// plain dashboard file unchanged, and each PodMonitor selects the pods a
/// vendor overlay runs, on a port those pods name.
#[test]
fn the_overlay_ships_the_dashboard_file_and_monitors_the_genfleet_pods() {
    let Some(kubectl) = tools::kubectl() else {
        return;
    };
    let objects = tools::documents(&tools::render(&kubectl, Path::new(MONITORING)));
    let config_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "genfleet-dashboard")
        .expect("the overlay renders ConfigMap genfleet-dashboard");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["genfleet-dashboard.json"].as_str(),
        Some(read(DASHBOARD).as_str()),
        "the ConfigMap must carry deploy/grafana/genfleet-dashboard.json as it is"
    );
    assert_dashboard_reads_its_variables();
    let vendor_overlay = Path::new(ROOT).join("deploy/overlays/nvidia");
    let pods = tools::documents(&tools::render(&kubectl, &vendor_overlay));
    assert_monitors_select(&objects, &pods);
}

/// Panels have distinct ids and read the `${datasource}` variable.
fn assert_dashboard_reads_its_variables() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("JSON");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "queue", "flavor", "node"]);
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
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
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
            let (metric, label) = args
                .trim_end_matches(')')
                .split_once(',')
                .expect("label_values(metric, label)");
            variables.push((metric.trim().to_string(), label.trim().to_string()));
        }
    }
    (queries, variables)
}

/// `expr` as Grafana sends it with every variable at "All" and a one-minute
/// rate interval.
fn concrete(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
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
/// whose budget (36 ms of a device a day) the first job uses up.
const QUEUES: &str = "name: capped\nquotas:\n  cpu: { nominal: 0 }\n---\nname: tight\nquotas:\n  cpu: { nominal: 1 }\nbudget: { device_hours: 0.00001, period: 1day }\n";

/// A local cluster with metrics: three scheduler replicas and a worker on
/// the recorded MI300X node's sysfs; jobs have run and others wait.
struct Cluster {
    replicas: Replicas,
    _worker: common::Proc,
    worker_metrics: String,
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
        let (worker, metrics) = common::start_worker_with(
            &all,
            "mi300x-node",
            &models,
            &dir.path().join("artifacts"),
            &["--sysfs-root", sysfs, "--metrics-listen", "127.0.0.1:0"],
        );
        Cluster {
            replicas,
            _worker: worker,
            worker_metrics: metrics.expect("the worker's metrics url"),
            _dir: dir,
        }
    }

    /// Runs a standard, an interactive and a budgeted job to the end, and
    /// leaves one job over quota and one over budget pending.
    async fn run_jobs(&self) {
        let leader = self.replicas.leader().await.expect("a leader");
        let mut jobs = client(&self.replicas.endpoint(leader)).await;
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

    fn scheduler_metrics(&self) -> Vec<String> {
        self.replicas.metrics.values().cloned().collect()
    }

    /// Every metric name the processes export now.
    fn exported(&self) -> BTreeSet<String> {
        let urls = self.scheduler_metrics().into_iter();
        urls.chain([self.worker_metrics.clone()])
            .flat_map(|url| exported_names(&common::http_get(&url)))
            .collect()
    }
}

fn host_port(metrics_url: &str) -> String {
    let rest = metrics_url.strip_prefix("http://").expect("an http url");
    rest.split('/').next().expect("host:port").to_string()
}

/// No drift: every metric the dashboard and the rules name is exported.
fn assert_names_are_exported(exported: &BTreeSet<String>, used: &BTreeMap<String, String>) {
    let definitions = read(concat!(
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
            || ONLY_WITH_KUBERNETES.contains(&name.as_str());
        assert!(
            known,
            "{used_by} uses metric {name}, which neither the scheduler nor the worker exports (renamed or removed in scheduler/src/metrics.rs or worker/src/metrics.rs?)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_prometheus_evaluates_every_dashboard_and_alert_expression() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("genfleet-rules.yaml");
    let groups = serde_yaml_ng::to_string(&rule_groups()).expect("yaml");
    std::fs::write(&rules, groups).expect("write the rules");
    let jobs = [
        ScrapeJob {
            job: "genfleet-scheduler".into(),
            targets: cluster
                .scheduler_metrics()
                .iter()
                .map(|u| host_port(u))
                .collect(),
        },
        ScrapeJob {
            job: "genfleet-worker".into(),
            targets: vec![host_port(&cluster.worker_metrics)],
        },
    ];
    let prometheus = Prometheus::start(&binary, &jobs, &rules);
    cluster.run_jobs().await;

    let (queries, variables) = dashboard_queries();
    let alerts = alerts(&rule_groups());
    let mut used = BTreeMap::new();
    for q in &queries {
        for name in metric_names(&q.expr) {
            used.insert(name, format!("dashboard panel {:?}", q.panel));
        }
    }
    for (metric, label) in &variables {
        used.insert(metric.clone(), format!("dashboard variable over {label}"));
    }
    for (alert, expr) in &alerts {
        for name in metric_names(expr) {
            used.insert(name, format!("alert {alert}"));
        }
    }
    assert_names_are_exported(&cluster.exported(), &used);

    let prometheus = &prometheus;
    tokio::task::block_in_place(|| {
        poll(30, || prometheus.targets_not_up(4));
        for (alert, expr) in &alerts {
            if let Err(e) = prometheus.query(expr) {
                panic!("alert {alert}: Prometheus refuses its expression: {e}\n{expr}");
            }
        }
        poll(60, || panels_without_data(prometheus, &queries));
        for (metric, label) in &variables {
            let path = format!("/api/v1/label/{label}/values?match[]={metric}");
            poll(10, || match prometheus.api(&path) {
                Ok(values) if values.as_array().is_some_and(|v| !v.is_empty()) => None,
                other => Some(format!(
                    "dashboard variable {label} of {metric} has no values: {other:?}"
                )),
            });
        }
        poll(30, || prometheus.rules_not_evaluated(alerts.len()));
        poll(30, || alerts_not_as_expected(prometheus));
    });
    eprintln!(
        "monitoring: {} dashboard and {} alert expressions evaluated in {:.0?}",
        queries.len(),
        alerts.len(),
        started.elapsed()
    );
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
}

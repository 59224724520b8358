//! `genfleet trace export` with real processes: a workload of a few
//! hundred short jobs runs through a local cluster whose retention keeps
//! only 20 ended jobs, so nearly all of them have left the state when the
//! trace is exported; the export still holds every one (the history ring),
//! and `genfleet plan --trace` of it, on the cluster's fleet and learned
//! profile, gives the p95 waits per class the cluster's own records say
//! (within 10%, or `common::replay::SLACK_S` for sub-second waits: the
//! live path's commits and round trips that the simulation leaves out).
//! Only an admin may export: a tenant's key and no key are refused.

use crate::common;
use crate::tenants::{refused, succeed, ADMIN_KEY};

use std::collections::BTreeMap;
use std::time::Duration;

use common::replay::{self, compare_waits, plan_on_the_clusters_fleet};
use common::{channel, cli, client, list, start_scheduler, within, Local};
use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;

/// Ended jobs the cluster's retention keeps.
const RETAINED: usize = 20;

/// Every record `ExportTrace` streams, presenting `key` if given.
async fn export(endpoint: &str, key: Option<&str>) -> Result<Vec<pb::TraceRecord>, tonic::Status> {
    let mut cluster = ClusterServiceClient::new(channel(endpoint).await);
    let mut request = tonic::Request::new(pb::ExportTraceRequest::default());
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = cluster.export_trace(request).await?.into_inner();
    let mut records = Vec::new();
    while let Some(chunk) = stream.message().await? {
        records.extend(chunk.records);
    }
    Ok(records)
}

/// An exported CSV's rows, as column name -> value.
fn rows(text: &str) -> Vec<BTreeMap<&str, &str>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|line| header.iter().copied().zip(line.split(',')).collect())
        .collect()
}

fn seconds(row: &BTreeMap<&str, &str>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} is not seconds in {row:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_replays_the_clusters_exported_history_to_the_waits_it_saw() {
    let retained = RETAINED.to_string();
    let local = Local::start(&[
        "--min-runtime",
        "0s",
        "--retain-ended-max",
        &retained,
        "--retention-every",
        "200ms",
    ]);
    let _worker = replay::start_a100_worker(&local);
    // Another seed than plan_live's: another workload of the same kind.
    let arrivals = replay::workload(11);
    let ids = replay::replay(&local.endpoint, &arrivals).await;

    // Every job ends, and retention forgets all but the newest 20.
    let mut jobs = client(&local.endpoint).await;
    within(180, "every job ends and retention forgets them", async {
        loop {
            let records = export(&local.endpoint, None).await.expect("export");
            let ended = records.iter().all(|r| r.outcome().is_terminal());
            if records.len() == ids.len() && ended && list(&mut jobs).await.len() <= RETAINED {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    // The export holds every job, forgotten or not, as the cluster ran it.
    let trace = local.dir.path().join("trace.csv");
    let trace_arg = trace.to_str().expect("a UTF-8 path");
    let (ok, out, err) = cli(&[
        "trace",
        "export",
        "--scheduler",
        &local.endpoint,
        "--out",
        trace_arg,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{} jobs written", ids.len())),
        "{out}"
    );
    let text = std::fs::read_to_string(&trace).expect("the export");
    let rows = rows(&text);
    assert_eq!(rows.len(), ids.len(), "{text}");
    assert_eq!(
        seconds(&rows[0], "arrival_s"),
        0.0,
        "from the first arrival"
    );
    let mut measured: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in &rows {
        assert_eq!(row["outcome"], "completed", "{row:?}");
        let wait = seconds(row, "first_start_s") - seconds(row, "arrival_s");
        assert!(wait >= 0.0, "{row:?}");
        measured
            .entry(row["qos"].to_string())
            .or_default()
            .push(wait);
    }
    let interactive = arrivals.iter().filter(|a| a.qos == "interactive").count();
    assert_eq!(measured.get("interactive").map(Vec::len), Some(interactive));

    // The planner reads the export as it is, and sees what the cluster saw.
    let report = plan_on_the_clusters_fleet(&local, &trace);
    let (lines, misses) = compare_waits(measured.clone(), &report, &["p95"]);
    let (p50s, _) = compare_waits(measured, &report, &["p50"]);
    let summary = [
        format!(
            "{} jobs exported, {} still in the state; {} preemptions planned",
            rows.len(),
            list(&mut jobs).await.len(),
            report["preemptions"]
        ),
        lines.join("\n"),
        format!("(not asserted) {}", p50s.join("; ")),
    ]
    .join("\n");
    println!("{summary}");
    assert!(misses.is_empty(), "{misses:?} off:\n{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_exports_the_trace() {
    let config = tempfile::tempdir().expect("tempdir");
    let config = config.path();
    let key_file = config.join("admin.key");
    std::fs::write(&key_file, format!("{ADMIN_KEY}\n")).expect("write the admin key");
    let key_file = key_file.to_string_lossy().to_string();
    let scheduler = start_scheduler(
        &config.join("data"),
        "127.0.0.1:0",
        &["--admin-key-file", &key_file],
    );
    let ep = scheduler.endpoint.as_str();
    let on = |key: &str, args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--scheduler", ep]);
        succeed(config, key, &v)
    };
    let queues = config.join("queues.yaml");
    std::fs::write(&queues, "name: red\nquotas:\n  cpu:\n    nominal: 2\n").expect("write");
    on(
        ADMIN_KEY,
        &["queue", "apply", "-f", &queues.to_string_lossy()],
    );
    on(ADMIN_KEY, &["tenant", "apply", "alpha", "--queues", "red"]);
    let alpha = on(ADMIN_KEY, &["key", "create", "--tenant", "alpha"]);
    let alpha = alpha.trim();
    // No worker: the jobs wait, and are exported as pending.
    on(
        alpha,
        &["submit", "--prompt", "a lighthouse", "--steps", "1000"],
    );
    on(ADMIN_KEY, &["submit", "--prompt", "a comet"]);

    let anonymous = export(ep, None).await.expect_err("no key");
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    let tenant = export(ep, Some(alpha)).await.expect_err("a tenant's key");
    assert_eq!(tenant.code(), tonic::Code::PermissionDenied, "{tenant:?}");
    let err = refused(config, Some(alpha), &["trace", "export", "--scheduler", ep]);
    assert!(err.contains("admin"), "a tenant exports the trace: {err}");

    // The admin's export: both tenants' jobs, the long one included.
    let text = on(ADMIN_KEY, &["trace", "export"]);
    let rows = rows(&text);
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0]["steps"], "1000", "{text}");
    assert!(rows
        .iter()
        .all(|r| r["outcome"] == "pending" && r["first_start_s"].is_empty()));
    let recent = on(ADMIN_KEY, &["trace", "export", "--since", "1h"]);
    assert_eq!(recent, text, "both arrived within the hour");
    let err = refused(
        config,
        Some(ADMIN_KEY),
        &["trace", "export", "--completed-only", "--scheduler", ep],
    );
    assert!(err.contains("nothing to export"), "{err}");
    let err = refused(
        config,
        Some(ADMIN_KEY),
        &["trace", "export", "--since", "a while", "--scheduler", ep],
    );
    assert!(err.contains("neither a time"), "{err}");
}

//! Retention and paged lists on a real scheduler: ended jobs beyond the
//! configured number leave the state (the newest stay, unfinished ones are
//! never touched), a forgotten job answers "not found", the metric counts
//! them; lists come in pages, newest first, through gRPC and the CLI.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use genfleet_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_beyond_the_limit_leave_and_lists_come_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--retain-ended-max",
            "3",
            "--retention-every",
            "100ms",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let mut client = client(&scheduler.endpoint).await;
    // No worker: jobs stay pending until cancelled.
    let mut ids = Vec::new();
    for k in 0..8 {
        ids.push(
            submit(&mut client, small_spec(&format!("a kite {k}"), k))
                .await
                .id,
        );
    }
    for id in &ids[..6] {
        client
            .cancel(pb::CancelJobRequest { id: id.clone() })
            .await
            .expect("cancel");
    }

    // The leader forgets the 3 oldest ended jobs within a few rounds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let jobs = list(&mut client).await;
        if jobs.len() <= 5 {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not act: {} jobs",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut kept: Vec<String> = left.iter().map(|j| j.id.clone()).collect();
    kept.sort();
    let mut expected: Vec<String> = ids[3..].to_vec();
    expected.sort();
    assert_eq!(kept, expected, "the newest 3 ended and the 2 pending stay");
    let gone = client
        .get(pb::GetJobRequest { id: ids[0].clone() })
        .await
        .expect_err("a forgotten job");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let metrics = http_get(scheduler.metrics.as_deref().expect("metrics address"));
    assert_eq!(
        metric(&metrics, "genfleet_jobs_forgotten_total", &[]),
        Some(3.0)
    );

    // Pages of 2, newest first, cover the 5 jobs once.
    let mut paged = Vec::new();
    let mut request = pb::ListJobsRequest {
        page_size: 2,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = client
            .list(request.clone())
            .await
            .expect("list")
            .into_inner();
        assert!(page.jobs.len() <= 2);
        paged.extend(page.jobs.into_iter().map(|j| j.id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = ids[3..].iter().rev().cloned().collect();
    assert_eq!(paged, newest_first);
    let bad = client
        .list(pb::ListJobsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("a made-up token");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // The CLI: the newest 2 only, or all by pages.
    let (ok, out, err) = cli(&[
        "jobs",
        "--scheduler",
        &scheduler.endpoint,
        "--limit",
        "2",
        "-o",
        "json",
    ]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("json");
    let listed: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(listed, newest_first[..2]);
    let (ok, out, err) = cli(&[
        "jobs",
        "--scheduler",
        &scheduler.endpoint,
        "--state",
        "pending",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().count(),
        3,
        "a header and the 2 pending jobs: {out}"
    );
}

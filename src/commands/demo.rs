//! `genfleet demo`: a local cluster, a few videos, where to find them.

use std::time::Instant;

use anyhow::bail;
use futures::future::join_all;
use genfleet_proto as pb;
use indicatif::MultiProgress;
use pb::JobState;

use super::jobs::follow;
use crate::cli::DemoArgs;
use crate::client::{connect, ClientError};
use crate::cluster::{LocalCluster, LocalClusterConfig};
use crate::render;

const PROMPTS: &[&str] = &[
    "a lighthouse on a cliff in a storm at night",
    "a red fox running through fresh snow",
    "timelapse of clouds over a mountain lake",
    "a paper boat drifting down a rainy street",
    "neon signs flickering in a quiet alley",
];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    say!(
        "genfleet demo: a scheduler and a worker in this process, data in {}",
        args.data_dir.display()
    );
    // The demo's cluster has keys like any other; the demo is its admin.
    let (admin_key, _) = crate::cluster::local_admin_key(&args.data_dir)?;
    crate::client::use_api_key(Some(admin_key.clone()));
    let cluster = LocalCluster::start(LocalClusterConfig {
        data_dir: args.data_dir.clone(),
        listen: "127.0.0.1:0".parse()?,
        metrics_listen: None,
        workers: 1,
        replicas: 1,
        model: "tiny".into(),
        admin_key: Some(admin_key),
    })
    .await?;
    let result = generate(&cluster.endpoint, &args).await;
    cluster.stop().await?;
    let jobs = result?;

    say!();
    let mut failed = 0;
    for job in &jobs {
        let prompt = job.spec.as_ref().map(|s| s.prompt.as_str()).unwrap_or("");
        if job.state() != JobState::Completed {
            failed += 1;
            say!(
                "{} {}: {} ({prompt})",
                job.id,
                job.state().label(),
                job.message
            );
            continue;
        }
        say!("{}  \"{prompt}\"", job.id);
        for artifact in &job.artifacts {
            say!(
                "    {:<10} {}",
                artifact.kind,
                render::location(&artifact.uri)
            );
        }
    }
    say!(
        "\n{} videos in {:.0?}",
        jobs.len() - failed,
        started.elapsed()
    );
    if failed > 0 {
        bail!("{failed} of {} demo jobs did not complete", jobs.len());
    }
    Ok(())
}

/// Submits the demo's jobs and follows them all to their end.
async fn generate(endpoint: &str, args: &DemoArgs) -> Result<Vec<pb::Job>, ClientError> {
    let mut scheduler = connect(endpoint).await?;
    let mut ids = Vec::new();
    for i in 0..args.jobs {
        let spec = pb::JobSpec {
            prompt: PROMPTS[i as usize % PROMPTS.len()].to_string(),
            frames: 17,
            width: 256,
            height: 256,
            steps: args.steps,
            seed: u64::from(i),
            guidance: 5.0,
            fps: 8,
            model: "tiny".into(),
            ..Default::default()
        };
        let job = scheduler.submit(spec).await?;
        ids.push(job.id);
    }
    let bars = MultiProgress::new();
    let follows = ids.iter().map(|id| {
        let bar = bars.add(render::job_bar(id, u64::from(args.steps)));
        async move {
            let mut scheduler = connect(endpoint).await?;
            follow(&mut scheduler, id, &bar).await
        }
    });
    join_all(follows).await.into_iter().collect()
}

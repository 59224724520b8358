//! `genfleet demo`: a local cluster, a few videos, where to find them.

use std::time::Instant;

use anyhow::bail;
use futures::future::join_all;
use genfleet_proto as pb;
use genfleet_worker::rng::SeededRng;
use genfleet_worker::world::{self, Split};
use indicatif::MultiProgress;
use pb::JobState;

use super::jobs::follow;
use crate::cli::DemoArgs;
use crate::client::{connect, ClientConfig, ClientError};
use crate::cluster::{LocalCluster, LocalClusterConfig};
use crate::render;

/// The demo's model: trained on the procedural world, so its prompts come
/// from that world's captions.
const MODEL: &str = "world";

/// Classifier-free guidance: the trained model follows its prompt best
/// between 4 and 7 (docs/world-model.md).
const GUIDANCE: f32 = 5.0;

/// Prompt `i` of the demo: the caption of a scene of the world, drawn from
/// the combinations training never showed together.
fn prompt(i: u32) -> String {
    let mut rng = SeededRng::for_name(0xde30, &i.to_string());
    let scene = world::scene(Split::HeldOut, &mut rng);
    world::caption(&scene, &mut rng)
}

pub async fn run(args: DemoArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    say!(
        "genfleet demo: a scheduler and a worker in this process, data in {}",
        args.data_dir.display()
    );
    // The demo's cluster has keys like any other; the demo is its admin.
    let (admin_key, _) = crate::cluster::local_admin_key(&args.data_dir)?;
    let client = client.clone().with_api_key(Some(admin_key.clone()));
    let cluster = LocalCluster::start(LocalClusterConfig {
        data_dir: args.data_dir.clone(),
        listen: "127.0.0.1:0".parse()?,
        metrics_listen: None,
        workers: 1,
        replicas: 1,
        models: crate::cluster::LOCAL_MODELS.map(String::from).to_vec(),
        admin_key: Some(admin_key),
        cluster_secret: Some(crate::cluster::local_cluster_secret(&args.data_dir)?),
        api_listen: None,
    })
    .await?;
    let result = generate(&client, &cluster.endpoint, &args).await;
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
                "    {:<11} {}",
                artifact.kind,
                render::location(&artifact.uri)
            );
        }
    }
    let made = jobs.len() - failed;
    say!(
        "\n{made} video{} in {:.0?}",
        if made == 1 { "" } else { "s" },
        started.elapsed()
    );
    if failed > 0 {
        bail!("{failed} of {} demo jobs did not complete", jobs.len());
    }
    Ok(())
}

/// Submits the demo's jobs and follows them all to their end.
async fn generate(
    client: &ClientConfig,
    endpoint: &str,
    args: &DemoArgs,
) -> Result<Vec<pb::Job>, ClientError> {
    let mut scheduler = connect(client, endpoint).await?;
    let mut ids = Vec::new();
    let (width, height) = pb::models::default_size(MODEL);
    for i in 0..args.jobs {
        let spec = pb::JobSpec {
            prompt: prompt(i),
            frames: 17,
            width,
            height,
            steps: args.steps,
            seed: u64::from(i),
            guidance: GUIDANCE,
            fps: 8,
            model: MODEL.into(),
            ..Default::default()
        };
        let job = scheduler.submit(spec).await?;
        ids.push(job.id);
    }
    let bars = MultiProgress::new();
    let follows = ids.iter().map(|id| {
        let bar = bars.add(render::job_bar(id, u64::from(args.steps)));
        async move {
            let mut scheduler = connect(client, endpoint).await?;
            follow(&mut scheduler, id, &bar).await
        }
    });
    join_all(follows).await.into_iter().collect()
}

//! Client commands: `submit`, `jobs`, `get`, `watch`, `cancel`.

use anyhow::bail;
use genfleet_proto as pb;
use pb::job_service_client::JobServiceClient;
use pb::JobState;
use tonic::transport::Channel;

use crate::cli::{JobIdArgs, JobsArgs, SubmitArgs};
use crate::client::{connect, ClientError};
use crate::render;

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let spec = pb::JobSpec {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        frames: args.frames,
        width: args.size.0,
        height: args.size.1,
        steps: args.steps,
        seed: args.seed,
        guidance: args.guidance,
        fps: args.fps,
        model: args.model,
        tp: 1,
        queue: String::new(),
    };
    // Checked here too, so a typo is caught before any network call.
    genfleet_scheduler::spec::validate(&genfleet_scheduler::spec::with_defaults(spec.clone()))?;
    let mut client = connect(&args.client.scheduler).await?;
    let job = client
        .submit(pb::SubmitRequest { spec: Some(spec) })
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .job
        .unwrap_or_default();
    if !args.watch {
        println!("{}", job.id);
        return Ok(());
    }
    eprintln!("submitted {}", job.id);
    let job = follow(&mut client, &job.id, &render::job_bar(&job.id, 1)).await?;
    finish_message(&job)
}

pub async fn list(args: JobsArgs) -> anyhow::Result<()> {
    let mut states = Vec::new();
    for name in &args.states {
        let state = [
            JobState::Pending,
            JobState::Running,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.label() == name.as_str());
        match state {
            Some(s) => states.push(s as i32),
            None => bail!(
                "unknown state {name:?}: use pending, running, completed, failed or cancelled"
            ),
        }
    }
    let mut client = connect(&args.client.scheduler).await?;
    let jobs = client
        .list(pb::ListJobsRequest { states })
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .jobs;
    if jobs.is_empty() {
        println!("no jobs");
    } else {
        println!("{}", render::job_table(&jobs));
    }
    Ok(())
}

pub async fn get(args: JobIdArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client.scheduler).await?;
    let job = client
        .get(pb::GetJobRequest { id: args.id })
        .await
        .map_err(ClientError::from)?
        .into_inner();
    println!("{}", render::job_details(&job));
    Ok(())
}

pub async fn watch(args: JobIdArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client.scheduler).await?;
    let job = follow(&mut client, &args.id, &render::job_bar(&args.id, 1)).await?;
    finish_message(&job)
}

pub async fn cancel(args: JobIdArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client.scheduler).await?;
    let job = client
        .cancel(pb::CancelJobRequest { id: args.id })
        .await
        .map_err(ClientError::from)?
        .into_inner();
    println!("{} {}", job.id, job.state().label());
    Ok(())
}

/// Follows a job on `bar` until it ends; returns it as it ended.
pub async fn follow(
    client: &mut JobServiceClient<Channel>,
    id: &str,
    bar: &indicatif::ProgressBar,
) -> Result<pb::Job, ClientError> {
    let mut stream = client
        .watch(pb::WatchJobRequest { id: id.to_string() })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(event) = stream.message().await? {
        let Some(job) = event.job else { continue };
        render::update_bar(bar, &job);
        let ended = job.state().is_terminal();
        last = Some(job);
        if ended {
            break;
        }
    }
    bar.finish();
    match last {
        Some(job) if job.state().is_terminal() => Ok(job),
        _ => Err(ClientError::Refused {
            code: "unavailable".into(),
            message: format!(
                "the watch of {id} ended before the job did; `genfleet watch {id}` resumes it"
            ),
        }),
    }
}

/// Prints where the results are; an error if the job did not complete.
fn finish_message(job: &pb::Job) -> anyhow::Result<()> {
    if job.state() != JobState::Completed {
        bail!("job {} {}: {}", job.id, job.state().label(), job.message);
    }
    println!("{}", render::job_details(job));
    Ok(())
}

//! Client commands: `submit`, `jobs`, `get`, `watch`, `cancel`.

use anyhow::bail;
use genfleet_proto as pb;
use pb::JobState;

use crate::cli::{JobIdArgs, JobsArgs, SubmitArgs};
use crate::client::{connect, retryable, ClientConfig, ClientError, Scheduler};
use crate::output::{self, Format};
use crate::render;

pub async fn submit(args: SubmitArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let (width, height) = args.size();
    let spec = pb::JobSpec {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        frames: args.frames,
        width,
        height,
        steps: args.steps,
        seed: args.seed,
        guidance: args.guidance,
        fps: args.fps,
        model: args.model,
        tp: args.tp,
        queue: args.queue.unwrap_or_default(),
        qos: args.qos.unwrap_or_default(),
        priority: args.priority,
        remix_of: String::new(),
    };
    // Checked here too, so a typo is caught before any network call.
    genfleet_scheduler::spec::validate(&genfleet_scheduler::spec::with_defaults(spec.clone()))?;
    let mut scheduler = connect(client, &args.client.scheduler).await?;
    let job = scheduler.submit(spec).await?;
    // On stderr: stdout stays the job (its id, or -o json) for scripts.
    if let Some(note) = render::vocabulary_note(&job) {
        say_err!("{note}");
    }
    let format = args.output.output;
    if !args.watch {
        return output::object(format, &job, || job.id.clone());
    }
    say_err!("submitted {}", job.id);
    let job = follow(&mut scheduler, &job.id, &bar(format, &job.id)).await?;
    finish_message(&job, format)
}

/// A progress bar on the terminal; none when the output is for programs.
fn bar(format: Format, id: &str) -> indicatif::ProgressBar {
    if format.structured() {
        indicatif::ProgressBar::hidden()
    } else {
        render::job_bar(id, 1)
    }
}

pub async fn list(args: JobsArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let mut states = Vec::new();
    for name in &args.states {
        let state = JobState::ALL
            .into_iter()
            .find(|s| s.label() == name.as_str());
        match state {
            Some(s) => states.push(s as i32),
            None => bail!(
                "unknown state {name:?}: use pending, running, completed, failed or cancelled"
            ),
        }
    }
    let mut scheduler = connect(client, &args.client.scheduler).await?;
    // Page by page, newest first, until --limit or the end.
    let mut jobs = Vec::new();
    let mut request = pb::ListJobsRequest {
        states,
        queue: args.queue.clone().unwrap_or_default(),
        ..Default::default()
    };
    loop {
        let left = args.limit.map(|l| l.saturating_sub(jobs.len()));
        if left == Some(0) {
            break;
        }
        request.page_size = left.map_or(0, |l| l.min(1000) as u32);
        let page = scheduler
            .call(|mut c| {
                let request = request.clone();
                async move { c.list(request).await }
            })
            .await?;
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    output::list(args.output.output, &jobs, |wide| {
        match (jobs.is_empty(), wide) {
            (true, _) => "no jobs".into(),
            (false, false) => render::job_table(&jobs),
            (false, true) => render::job_table_wide(&jobs),
        }
    })
}

pub async fn get(args: JobIdArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let mut scheduler = connect(client, &args.client.scheduler).await?;
    let request = pb::GetJobRequest { id: args.id };
    let job = scheduler
        .call(|mut c| {
            let request = request.clone();
            async move { c.get(request).await }
        })
        .await?;
    output::object(args.output.output, &job, || render::job_details(&job))
}

pub async fn watch(args: JobIdArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let mut scheduler = connect(client, &args.client.scheduler).await?;
    let format = args.output.output;
    let job = follow(&mut scheduler, &args.id, &bar(format, &args.id)).await?;
    finish_message(&job, format)
}

pub async fn cancel(args: JobIdArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let mut scheduler = connect(client, &args.client.scheduler).await?;
    let request = pb::CancelJobRequest { id: args.id };
    let job = scheduler
        .call(|mut c| {
            let request = request.clone();
            async move { c.cancel(request).await }
        })
        .await?;
    output::object(args.output.output, &job, || {
        format!("{} {}", job.id, job.state().label())
    })
}

/// Follows a job on `bar` until it ends; returns it as it ended. A watch
/// broken by a failover is opened again on another replica.
pub async fn follow(
    scheduler: &mut Scheduler,
    id: &str,
    bar: &indicatif::ProgressBar,
) -> Result<pb::Job, ClientError> {
    let request = pb::WatchJobRequest { id: id.to_string() };
    let mut breaks = 0;
    let job = 'watch: loop {
        let mut stream = scheduler
            .call(|mut c| {
                let request = request.clone();
                async move { c.watch(request).await }
            })
            .await?;
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    let Some(job) = event.job else { continue };
                    render::update_bar(bar, &job);
                    if job.state().is_terminal() {
                        break 'watch job;
                    }
                }
                Err(status) if retryable(&status) && breaks < MAX_WATCH_BREAKS => break,
                Err(status) => return Err(status.into()),
                Ok(None) => {
                    return Err(ClientError::Refused {
                        code: "unavailable".into(),
                        message: format!("the watch of {id} ended before the job did; `genfleet watch {id}` resumes it"),
                    })
                }
            }
        }
        breaks += 1;
        scheduler.reconnect().await;
    };
    bar.finish();
    Ok(job)
}

/// Broken watch streams a follow opens again before it gives up.
const MAX_WATCH_BREAKS: u32 = 20;

/// Prints where the results are (the job itself for programs, however it
/// ended); an error if the job did not complete.
fn finish_message(job: &pb::Job, format: Format) -> anyhow::Result<()> {
    if format.structured() {
        output::object(format, job, String::new)?;
    } else if job.state() == JobState::Completed {
        output::print(&render::job_details(job))?;
    }
    if job.state() != JobState::Completed {
        bail!("job {} {}: {}", job.id, job.state().label(), job.message);
    }
    Ok(())
}

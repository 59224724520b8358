//! How jobs look on a terminal: tables, details and progress bars.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genfleet_proto as pb;
use indicatif::{ProgressBar, ProgressStyle};
use pb::models::gib;
use pb::JobState;

/// A path for `file://` URIs, the URI otherwise.
pub fn location(uri: &str) -> &str {
    uri.strip_prefix("file://").unwrap_or(uri)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// "3s", "4m", "2h": how long ago `at_ms` was.
pub fn age(at_ms: i64) -> String {
    if at_ms <= 0 {
        return "-".into();
    }
    let secs = ((now_ms() - at_ms).max(0) / 1000) as u64;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

fn steps(job: &pb::Job) -> u32 {
    job.spec.as_ref().map_or(0, |s| s.steps)
}

/// Why a pending job waits, with the scheduler's estimate of when it starts.
pub fn waiting(job: &pb::Job) -> String {
    match job.eta_seconds {
        Some(eta) if eta.is_finite() && eta >= 0.0 => {
            let eta = Duration::from_secs(eta.round() as u64);
            format!(
                "{} (starts in ~{})",
                job.pending_reason,
                humantime::format_duration(eta)
            )
        }
        _ => job.pending_reason.clone(),
    }
}

/// The one thing worth knowing about a job besides its state.
pub fn detail(job: &pb::Job) -> String {
    match job.state() {
        JobState::Pending => waiting(job),
        JobState::Completed if job.simulated => "simulated: no video".into(),
        JobState::Completed => job
            .artifacts
            .iter()
            .find(|a| a.kind == "video")
            .map(|a| location(&a.uri).to_string())
            .unwrap_or_default(),
        JobState::Failed | JobState::Cancelled => job.message.clone(),
        _ => String::new(),
    }
}

/// The `genfleet jobs` table.
pub fn job_table(jobs: &[pb::Job]) -> String {
    let rows: Vec<[String; 6]> = jobs
        .iter()
        .map(|j| {
            [
                j.id.clone(),
                j.state().label().to_string(),
                format!("{}/{}", j.step, steps(j)),
                if j.node.is_empty() {
                    "-".into()
                } else {
                    j.node.clone()
                },
                age(j.created_at_ms),
                detail(j),
            ]
        })
        .collect();
    table(["ID", "STATE", "STEP", "NODE", "AGE", "DETAIL"], &rows)
}

/// `genfleet jobs -o wide`: where each job queued, for whom, and what it asks.
pub fn job_table_wide(jobs: &[pb::Job]) -> String {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<[String; 11]> = jobs
        .iter()
        .map(|j| {
            let spec = j.spec.clone().unwrap_or_default();
            [
                j.id.clone(),
                j.state().label().to_string(),
                format!("{}/{}", j.step, steps(j)),
                dash(&j.node),
                dash(&spec.queue),
                dash(&spec.qos),
                dash(&j.tenant),
                dash(&spec.model),
                format!("{}x{}x{}", spec.width, spec.height, spec.frames),
                age(j.created_at_ms),
                detail(j),
            ]
        })
        .collect();
    table(
        [
            "ID", "STATE", "STEP", "NODE", "QUEUE", "QOS", "TENANT", "MODEL", "SIZE", "AGE",
            "DETAIL",
        ],
        &rows,
    )
}

/// `genfleet queue list`: one line per queue, its quotas as
/// flavor=nominal(+borrow, lend).
/// `budget_used_hours`: device-hours used this period, by budgeted queue.
pub fn queue_table(
    queues: &[pb::Queue],
    budget_used_hours: &std::collections::HashMap<String, f64>,
) -> String {
    let rows: Vec<[String; 5]> = queues
        .iter()
        .map(|q| {
            let quotas: Vec<String> = q
                .quotas
                .iter()
                .map(|f| {
                    let mut text = format!("{}={}", f.flavor, f.nominal);
                    if let Some(b) = f.borrowing_limit {
                        text.push_str(&format!(" borrow<={b}"));
                    }
                    if let Some(l) = f.lending_limit {
                        text.push_str(&format!(" lend<={l}"));
                    }
                    text
                })
                .collect();
            [
                q.name.clone(),
                if q.cohort.is_empty() {
                    "-".into()
                } else {
                    q.cohort.clone()
                },
                q.weight.to_string(),
                match &q.budget {
                    Some(b) => format!(
                        "{:.2}/{} device-h per {}",
                        budget_used_hours.get(&q.name).copied().unwrap_or(0.0),
                        b.device_hours,
                        humantime::format_duration(Duration::from_secs(b.period_seconds))
                    ),
                    None => "-".into(),
                },
                if quotas.is_empty() {
                    "-".into()
                } else {
                    quotas.join(", ")
                },
            ]
        })
        .collect();
    table(["QUEUE", "COHORT", "WEIGHT", "BUDGET", "QUOTAS"], &rows)
}

/// `genfleet node list`; `wide` adds the models and running jobs.
pub fn node_table(nodes: &[pb::NodeInfo], wide: bool) -> String {
    if wide {
        let rows: Vec<[String; 5]> = node_rows(nodes)
            .into_iter()
            .zip(nodes)
            .map(|([name, status, busy, devices], n)| {
                let jobs = if n.jobs.is_empty() {
                    "-".into()
                } else {
                    n.jobs.join(",")
                };
                [
                    name,
                    status,
                    busy,
                    n.models.join(","),
                    format!("{devices}  jobs: {jobs}"),
                ]
            })
            .collect();
        return table(["NODE", "STATUS", "BUSY", "MODELS", "DEVICES"], &rows);
    }
    table(["NODE", "STATUS", "BUSY", "DEVICES"], &node_rows(nodes))
}

fn node_rows(nodes: &[pb::NodeInfo]) -> Vec<[String; 4]> {
    nodes
        .iter()
        .map(|n| {
            let status = match (n.up, n.cordoned, n.draining) {
                (false, _, _) => "down",
                (true, _, true) => "draining",
                (true, true, false) => "cordoned",
                (true, false, false) => "ready",
            };
            let devices: Vec<String> = n
                .devices
                .iter()
                .map(|g| {
                    let simulated = if g.simulated { " (simulated)" } else { "" };
                    // Memory of each device, and what was free at registration.
                    let memory = match (g.memory_bytes, g.free_memory_bytes) {
                        (0, _) => String::new(),
                        (total, Some(free)) => format!(" {} ({} free)", gib(total), gib(free)),
                        (total, None) => format!(" {}", gib(total)),
                    };
                    format!("{}x{}{memory}{simulated}", g.count, g.flavor)
                })
                .collect();
            let total: u32 = n.devices.iter().map(|g| g.count).sum();
            [
                n.name.clone(),
                status.to_string(),
                format!("{}/{total}", n.busy_devices),
                devices.join(", "),
            ]
        })
        .collect()
}

/// A machine's GPUs with their telemetry (`genfleet devices`).
pub fn gpu_table(gpus: &[genfleet_worker::device::GpuInfo]) -> String {
    let gib = |bytes: u64| format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let rows: Vec<[String; 8]> = gpus
        .iter()
        .map(|g| {
            let t = &g.telemetry;
            [
                format!("{}:{}", g.vendor.label(), g.index),
                g.flavor.clone(),
                gib(g.memory_bytes),
                or_dash(t.memory_used_bytes.map(gib)),
                or_dash(t.busy_percent.map(|p| format!("{p}%"))),
                or_dash(t.power_watts.map(|w| format!("{w:.0} W"))),
                or_dash(t.temperature_c.map(|c| format!("{c:.0} C"))),
                if g.peers.is_empty() {
                    g.product.clone()
                } else {
                    format!("{} (NVLink peers: {})", g.product, g.peers.join(", "))
                },
            ]
        })
        .collect();
    table(
        [
            "GPU", "FLAVOR", "MEMORY", "USED", "BUSY", "POWER", "TEMP", "PRODUCT",
        ],
        &rows,
    )
}

/// Columns padded to their widest cell; the last one is left as is.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// `genfleet get`: every field worth reading.
pub fn job_details(job: &pb::Job) -> String {
    let spec = job.spec.clone().unwrap_or_default();
    let mut lines = vec![
        format!("id:        {}", job.id),
        format!("state:     {}", job.state().label()),
        format!("prompt:    {}", spec.prompt),
        format!(
            "video:     {} frames, {}x{}, {} fps, model {}, {} steps, seed {}, guidance {}",
            spec.frames,
            spec.width,
            spec.height,
            spec.fps,
            spec.model,
            spec.steps,
            spec.seed,
            spec.guidance
        ),
        format!("progress:  {}/{} steps", job.step, spec.steps),
    ];
    if !job.unknown_words.is_empty() {
        // Under the prompt.
        lines.insert(
            3,
            format!(
                "unknown:   {} (not words of model {})",
                quoted(&job.unknown_words),
                spec.model
            ),
        );
    }
    if !job.node.is_empty() {
        let simulated = if job.simulated {
            ", simulated devices"
        } else {
            ""
        };
        lines.push(format!(
            "node:      {} (lease epoch {}{simulated})",
            job.node, job.lease_epoch
        ));
    }
    let spec_line = format!(
        "class:     {} in queue {}, priority {}, tp {}",
        if spec.qos.is_empty() {
            "standard"
        } else {
            spec.qos.as_str()
        },
        spec.queue,
        spec.priority,
        spec.tp
    );
    lines.push(spec_line);
    lines.push(format!("submitted: {} ago", age(job.created_at_ms)));
    if job.started_at_ms > 0 && job.finished_at_ms > 0 {
        let run = Duration::from_millis((job.finished_at_ms - job.started_at_ms).max(0) as u64);
        lines.push(format!("ran:       {:.1}s", run.as_secs_f64()));
    }
    if job.requeues > 0 {
        lines.push(format!(
            "requeued:  {} times ({} preempted)",
            job.requeues, job.preemptions
        ));
    }
    if !job.preempting.is_empty() {
        lines.push(format!(
            "preempted: {}; checkpointing at the next step",
            job.preempting.replace('_', " ")
        ));
    }
    if let Some(checkpoint) = &job.checkpoint {
        let at = if checkpoint.uri.is_empty() {
            "simulated, no data"
        } else {
            location(&checkpoint.uri)
        };
        lines.push(format!("resumes:   from step {} ({at})", checkpoint.step));
    }
    if !job.pending_reason.is_empty() {
        lines.push(format!("waiting:   {}", waiting(job)));
    }
    if !job.message.is_empty() {
        lines.push(format!("message:   {}", job.message));
    }
    for a in &job.artifacts {
        lines.push(format!(
            "{:<10} {} ({} bytes)",
            format!("{}:", a.kind),
            location(&a.uri),
            a.size_bytes
        ));
    }
    lines.join("\n")
}

/// `words` as `"cyan", "pink"`.
fn quoted(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    quoted.join(", ")
}

/// `submit`'s note: the words of the prompt the job's model does not know
/// (the scheduler's list) and what it knows instead, or that the prompt
/// names nothing it can show. `None` when there is nothing to say, or the
/// model reads any word.
pub fn vocabulary_note(job: &pb::Job) -> Option<String> {
    let spec = job.spec.as_ref()?;
    let vocabulary = pb::vocabulary::vocabulary(&spec.model)?;
    let model = &spec.model;
    let unknown = quoted(&job.unknown_words);
    let them = if job.unknown_words.len() == 1 {
        "it"
    } else {
        "them"
    };
    let own_choice = "the video will be a scene of the model's own choosing";
    let nothing_known = vocabulary.check(&spec.prompt).known.is_empty();
    let what = match (job.unknown_words.is_empty(), nothing_known) {
        (true, false) => return None,
        (false, false) => {
            format!("the {model} model does not know {unknown} and will not show {them}")
        }
        (false, true) => format!(
            "the {model} model does not know {unknown}, and the prompt names nothing else \
             it knows: {own_choice}"
        ),
        (true, true) => format!("the prompt names nothing the {model} model knows: {own_choice}"),
    };
    Some(format!("note: {what}; it knows {}", vocabulary.summary()))
}

/// A progress bar for one job.
pub fn job_bar(job_id: &str, total_steps: u64) -> ProgressBar {
    let bar = ProgressBar::new(total_steps.max(1));
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30.cyan/blue}] {pos:>3}/{len} steps {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(job_id.to_string());
    bar
}

/// Shows `job` on its bar.
pub fn update_bar(bar: &ProgressBar, job: &pb::Job) {
    bar.set_length(u64::from(steps(job)).max(1));
    bar.set_position(u64::from(job.step));
    let message = match job.state() {
        JobState::Pending => format!("pending: {}", waiting(job)),
        JobState::Running => format!("running on {}", job.node),
        state => state.label().to_string(),
    };
    bar.set_message(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: JobState) -> pb::Job {
        pb::Job {
            id: id.into(),
            state: state as i32,
            spec: Some(pb::JobSpec {
                steps: 20,
                ..Default::default()
            }),
            step: 5,
            pending_reason: "no worker is connected".into(),
            artifacts: vec![pb::Artifact {
                kind: "video".into(),
                uri: "file:///data/j-1/video.mp4".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_table_shows_what_matters_per_state() {
        let table = job_table(&[
            job("j-1", JobState::Completed),
            job("j-22", JobState::Pending),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID    STATE"), "{table}");
        assert!(
            lines[1].contains("completed") && lines[1].ends_with("/data/j-1/video.mp4"),
            "{table}"
        );
        assert!(
            lines[2].contains("5/20") && lines[2].ends_with("no worker is connected"),
            "{table}"
        );
    }

    fn world_job(prompt: &str) -> pb::Job {
        let spec = pb::JobSpec {
            prompt: prompt.into(),
            model: "world".into(),
            ..Default::default()
        };
        pb::Job {
            unknown_words: pb::vocabulary::unknown_words("world", prompt).unwrap_or_default(),
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn the_note_names_the_unknown_words_and_what_the_model_knows() {
        let job = world_job("a cyan hexagon on a pink background, spinning slowly");
        let note = vocabulary_note(&job).expect("a note");
        let expected = r#"note: the world model does not know "cyan", "hexagon", "pink", "spinning", "slowly", and the prompt names nothing else it knows: the video will be a scene of the model's own choosing; it knows colours red, green"#;
        assert!(note.starts_with(expected), "{note}");
        assert!(
            note.ends_with("backgrounds black, navy, gray, dark green, brown"),
            "{note}"
        );
        let details = job_details(&job);
        let line = r#"unknown:   "cyan", "hexagon", "pink", "spinning", "slowly" (not words of model world)"#;
        assert!(details.contains(line), "{details}");
        let one = vocabulary_note(&world_job("a red circle rises slowly")).expect("a note");
        let expected =
            r#"note: the world model does not know "slowly" and will not show it; it knows"#;
        assert!(one.starts_with(expected), "{one}");

        let none = vocabulary_note(&world_job("it is on the background")).expect("a note");
        assert!(
            none.starts_with("note: the prompt names nothing the world model knows: the video"),
            "{none}"
        );
        let caption = world_job("a big yellow square drifts to the right on a gray background");
        assert_eq!(vocabulary_note(&caption), None);
        assert!(!job_details(&caption).contains("unknown:"));
        let mut tiny = world_job("a cyan hexagon");
        tiny.spec = Some(pb::JobSpec {
            model: "tiny".into(),
            ..Default::default()
        });
        assert_eq!(
            vocabulary_note(&tiny),
            None,
            "a seeded preset reads any word"
        );
    }
}

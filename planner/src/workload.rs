//! The jobs a plan replays: a trace file (CSV with a header, or JSON
//! lines), each row checked as the scheduler checks a submission, so a plan
//! never runs a job the real cluster would refuse.
//!
//! Columns (CSV header names, JSON keys): `arrival_s` (seconds from the
//! start, at least 0), `queue`, `qos` (interactive, standard, batch),
//! `model`, `frames`, `size` (WIDTHxHEIGHT), `steps`, `tp`, and optionally
//! `priority` (-1000..1000, default 0) and `guidance` (default 5; 1 turns
//! classifier-free guidance off, halving the batch). What a cluster saw
//! (`genfleet trace export` writes it, [`export_csv`]) may follow:
//! `first_start_s` and `end_s` (seconds from the same start, as
//! `--jobs-out` names them; empty: not yet) and `outcome`; a plan checks
//! them and replays the job all the same.

use std::path::Path;

use genfleet_proto as pb;
use genfleet_scheduler::policy::Qos;
use genfleet_scheduler::spec;
use serde::Deserialize;

use super::InputError;

/// One job of the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// Seconds after the start of the plan.
    pub arrival_s: f64,
    pub queue: String,
    pub qos: Qos,
    pub priority: i32,
    pub model: String,
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub tp: u32,
    pub guidance: f32,
    /// Its line in the trace file (0: generated).
    pub line: u64,
}

impl JobRequest {
    /// The job as the scheduler would hold it (for its memory estimate).
    pub fn spec(&self) -> pb::JobSpec {
        spec::with_defaults(pb::JobSpec {
            prompt: "planned".into(),
            model: self.model.clone(),
            queue: self.queue.clone(),
            qos: self.qos.label().to_string(),
            priority: self.priority,
            frames: self.frames,
            width: self.width,
            height: self.height,
            steps: self.steps,
            tp: self.tp,
            guidance: self.guidance,
            ..Default::default()
        })
    }
}

/// A row as written, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    arrival_s: f64,
    queue: String,
    qos: String,
    model: String,
    frames: u32,
    size: String,
    steps: u32,
    tp: u32,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    guidance: Option<f32>,
    #[serde(default)]
    first_start_s: Option<f64>,
    #[serde(default)]
    end_s: Option<f64>,
    #[serde(default)]
    outcome: Option<String>,
}

/// What an exported job's `outcome` may say: its state when exported.
const OUTCOMES: [&str; 5] = ["completed", "failed", "cancelled", "pending", "running"];

/// Latest arrival a trace may give: a year, in seconds.
const MAX_ARRIVAL_S: f64 = 366.0 * 86_400.0;

impl Row {
    /// The request, or which field is wrong and why.
    fn check(self) -> Result<JobRequest, (&'static str, String)> {
        if !self.arrival_s.is_finite() || !(0.0..=MAX_ARRIVAL_S).contains(&self.arrival_s) {
            return Err((
                "arrival_s",
                format!("{} is not a time of 0 to a year's seconds", self.arrival_s),
            ));
        }
        // What the cluster saw is not replayed, but a garbled column
        // says the file is not what it claims to be.
        for (field, seconds) in [("first_start_s", self.first_start_s), ("end_s", self.end_s)] {
            if seconds.is_some_and(|s| !s.is_finite()) {
                return Err((field, "is not a number of seconds".into()));
            }
        }
        if let Some(outcome) = self.outcome.as_deref() {
            if !outcome.is_empty() && !OUTCOMES.contains(&outcome) {
                return Err((
                    "outcome",
                    format!("{outcome:?} is not one of {}", OUTCOMES.join(", ")),
                ));
            }
        }
        let qos = Qos::parse(&self.qos).ok_or_else(|| {
            (
                "qos",
                format!("{:?} is not interactive, standard or batch", self.qos),
            )
        })?;
        let (width, height) =
            genfleet_scheduler::spec::parse_size(&self.size).map_err(|e| ("size", e))?;
        // The wire format reads tp 0 as "one device"; a trace says what it means.
        if self.tp == 0 {
            return Err(("tp", "0: a job needs at least 1 device".into()));
        }
        let request = JobRequest {
            arrival_s: self.arrival_s,
            queue: self.queue,
            qos,
            priority: self.priority.unwrap_or(0),
            model: self.model,
            frames: self.frames,
            width,
            height,
            steps: self.steps,
            tp: self.tp,
            guidance: self.guidance.unwrap_or(spec::DEFAULT_GUIDANCE),
            line: 0,
        };
        // What the scheduler would refuse at submission, refused here with
        // its own words.
        spec::validate(&request.spec()).map_err(|e| (field_of(&e), e.to_string()))?;
        Ok(request)
    }
}

/// The trace column a submission error is about.
fn field_of(error: &spec::SpecError) -> &'static str {
    use spec::SpecError as E;
    match error {
        E::Frames(_) => "frames",
        E::Side { .. } | E::TooLarge { .. } => "size",
        E::Steps(_) => "steps",
        E::TensorParallel(_) => "tp",
        E::Guidance(_) => "guidance",
        E::Priority(_) => "priority",
        E::Qos(_) => "qos",
        E::Name { field, .. } => field,
        _ => "row",
    }
}

/// Reads a trace: `.csv` (with a header row) or JSON lines (`.jsonl`,
/// `.json`, `.ndjson`). Rows may come in any order; they are sorted by
/// arrival.
pub fn read_trace(path: &Path) -> Result<Vec<JobRequest>, InputError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InputError::io(&file, e))?;
    let csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut jobs = if csv {
        parse_csv(&file, &text)?
    } else {
        parse_json_lines(&file, &text)?
    };
    if jobs.is_empty() {
        return Err(InputError::at(&file, 0, "row", "the trace has no jobs"));
    }
    jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    Ok(jobs)
}

pub fn parse_csv(file: &str, text: &str) -> Result<Vec<JobRequest>, InputError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| InputError::at(file, 1, "header", &e.to_string()))?
        .clone();
    let mut jobs = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            InputError::at(file, line, "row", &csv_error_text(&e))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row: Row = record.deserialize(Some(&headers)).map_err(|e| {
            InputError::at(file, line, &csv_field(&e, &headers), &csv_error_text(&e))
        })?;
        let mut job = row
            .check()
            .map_err(|(field, why)| InputError::at(file, line, field, &why))?;
        job.line = line;
        jobs.push(job);
    }
    Ok(jobs)
}

/// The field a CSV error is about: the column it names by position (its
/// header), the header for a column the trace format does not have, or
/// what its text says.
fn csv_field(e: &csv::Error, headers: &csv::StringRecord) -> String {
    if let csv::ErrorKind::Deserialize { err, .. } = e.kind() {
        if let csv::DeserializeErrorKind::Message(m) = err.kind() {
            // "unknown field `x`, expected one of `arrival_s`, ...": the
            // fault is the column, not the first field it lists.
            if m.starts_with("unknown field") {
                return "header".into();
            }
        }
        if let Some(name) = err.field().and_then(|i| headers.get(i as usize)) {
            return name.to_string();
        }
    }
    let text = e.to_string();
    for field in [
        "arrival_s",
        "queue",
        "qos",
        "model",
        "frames",
        "size",
        "steps",
        "tp",
        "priority",
        "guidance",
        "first_start_s",
        "end_s",
        "outcome",
    ] {
        if text.contains(&format!("`{field}`")) || text.contains(&format!("field {field}")) {
            return field.into();
        }
    }
    "row".into()
}

fn csv_error_text(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => e.to_string(),
    }
}

/// The columns [`export_csv`] writes: the trace format's, then what the
/// cluster saw.
pub const EXPORT_HEADER: &str =
    "arrival_s,queue,qos,model,frames,size,steps,tp,priority,guidance,first_start_s,end_s,outcome";

/// A cluster's records (`ExportTrace`) as a CSV trace: times in seconds
/// from the first arrival, to the millisecond; a start or end that has not
/// happened is empty. Refuses a record the trace format cannot hold (its
/// row number in the output names it).
pub fn export_csv(records: &[pb::TraceRecord]) -> Result<String, InputError> {
    const FILE: &str = "the exported trace";
    let first = records.iter().map(|r| r.arrival_ms).min().unwrap_or(0);
    let at = |ms: i64| seconds(ms - first);
    let when = |ms: i64| if ms == 0 { String::new() } else { at(ms) };
    let mut out = format!("{EXPORT_HEADER}\n");
    for (i, r) in records.iter().enumerate() {
        let line = i as u64 + 2;
        // Names go in unquoted: they must be names (the state checks so).
        for (field, name) in [("queue", &r.queue), ("model", &r.model)] {
            if !pb::is_valid_name(name) {
                return Err(InputError::at(
                    FILE,
                    line,
                    field,
                    &format!("{name:?} is not a name"),
                ));
            }
        }
        let qos = Qos::parse(&r.qos).ok_or_else(|| {
            InputError::at(FILE, line, "qos", &format!("{:?} is not a class", r.qos))
        })?;
        let outcome = pb::JobState::try_from(r.outcome).map_or("", |s| s.label());
        out += &format!(
            "{},{},{},{},{},{}x{},{},{},{},{},{},{},{}\n",
            at(r.arrival_ms),
            r.queue,
            qos.label(),
            r.model,
            r.frames,
            r.width,
            r.height,
            r.steps,
            r.tp,
            r.priority,
            r.guidance,
            when(r.started_ms),
            when(r.ended_ms),
            outcome,
        );
    }
    Ok(out)
}

/// Milliseconds as seconds with three decimals, exactly (no float).
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

pub fn parse_json_lines(file: &str, text: &str) -> Result<Vec<JobRequest>, InputError> {
    let mut jobs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index as u64 + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // serde's message names the field (e.g. "missing field `queue`").
        let row: Row = serde_json::from_str(trimmed)
            .map_err(|e| InputError::at(file, line_no, "row", &e.to_string()))?;
        let mut job = row
            .check()
            .map_err(|(field, why): (&str, String)| InputError::at(file, line_no, field, &why))?;
        job.line = line_no;
        jobs.push(job);
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "arrival_s,queue,qos,model,frames,size,steps,tp,priority\n";

    #[test]
    fn csv_and_json_lines_read_the_same_jobs() {
        let csv = format!("{HEADER}0.5,product,interactive,tiny,17,256x256,20,1,5\n1,research,batch,medium,33,512x512,30,2,\n");
        let jobs = parse_csv("t.csv", &csv).expect("valid");
        assert_eq!(jobs.len(), 2);
        assert_eq!((jobs[0].qos, jobs[0].priority), (Qos::Interactive, 5));
        assert_eq!((jobs[1].width, jobs[1].tp, jobs[1].priority), (512, 2, 0));
        let json = r#"{"arrival_s":0.5,"queue":"product","qos":"interactive","model":"tiny","frames":17,"size":"256x256","steps":20,"tp":1,"priority":5}
# a comment
{"arrival_s":1,"queue":"research","qos":"batch","model":"medium","frames":33,"size":"512x512","steps":30,"tp":2}"#;
        let from_json = parse_json_lines("t.jsonl", json).expect("valid");
        assert_eq!((jobs[0].line, jobs[1].line), (2, 3), "CSV lines");
        assert_eq!((from_json[0].line, from_json[1].line), (1, 3), "JSON lines");
        let unlined = |jobs: Vec<JobRequest>| {
            jobs.into_iter()
                .map(|j| JobRequest { line: 0, ..j })
                .collect::<Vec<_>>()
        };
        assert_eq!(unlined(from_json), unlined(jobs));
    }

    fn record(arrival_ms: i64, qos: &str, started_ms: i64, ended_ms: i64) -> pb::TraceRecord {
        pb::TraceRecord {
            arrival_ms,
            queue: "research".into(),
            qos: qos.into(),
            model: "tiny".into(),
            width: 320,
            height: 240,
            frames: 17,
            steps: 1000,
            tp: 2,
            priority: -3,
            guidance: 7.5,
            started_ms,
            ended_ms,
            outcome: if ended_ms > 0 {
                pb::JobState::Completed
            } else {
                pb::JobState::Pending
            } as i32,
        }
    }

    #[test]
    fn an_export_reads_back_as_the_jobs_it_records() {
        let t0 = 1_764_000_000_000;
        let records = [
            record(t0, "batch", t0 + 1_500, t0 + 90_250),
            record(t0 + 2_001, "interactive", 0, 0),
        ];
        let text = export_csv(&records).expect("exportable");
        assert_eq!(
            text,
            format!("{EXPORT_HEADER}\n0.000,research,batch,tiny,17,320x240,1000,2,-3,7.5,1.500,90.250,completed\n2.001,research,interactive,tiny,17,320x240,1000,2,-3,7.5,,,pending\n")
        );
        // The planner reads it as a trace, what the cluster saw ignored.
        let jobs = parse_csv("export.csv", &text).expect("a trace");
        assert_eq!(jobs.len(), 2);
        let (a, b) = (&jobs[0], &jobs[1]);
        assert_eq!(
            (a.arrival_s, a.qos, a.steps, a.tp),
            (0.0, Qos::Batch, 1000, 2)
        );
        assert_eq!(
            (a.width, a.height, a.priority, a.guidance),
            (320, 240, -3, 7.5)
        );
        assert_eq!((b.arrival_s, b.qos), (2.001, Qos::Interactive));
        let bad = record(t0, "batch", 0, 0);
        let err = export_csv(&[pb::TraceRecord {
            model: "a,b".into(),
            ..bad
        }])
        .expect_err("not a name")
        .to_string();
        assert!(err.contains(":2: model: "), "{err}");
    }

    #[test]
    fn what_the_cluster_saw_is_checked_but_not_required() {
        let header = format!("{EXPORT_HEADER}\n");
        let ok = format!("{header}0,a,batch,tiny,17,256x256,20,1,0,5,,,\n");
        assert_eq!(parse_csv("t.csv", &ok).expect("empty: not yet").len(), 1);
        for (row, field) in [
            ("0,a,batch,tiny,17,256x256,20,1,0,5,1,2,lost", "outcome"),
            (
                "0,a,batch,tiny,17,256x256,20,1,0,5,NaN,2,completed",
                "first_start_s",
            ),
            (
                "0,a,batch,tiny,17,256x256,20,1,0,5,1,inf,completed",
                "end_s",
            ),
        ] {
            let err = parse_csv("t.csv", &format!("{header}{row}\n"))
                .expect_err(row)
                .to_string();
            assert!(
                err.starts_with(&format!("t.csv:2: {field}: ")),
                "{row}: {err}"
            );
        }
        let json = r#"{"arrival_s":0,"queue":"a","qos":"batch","model":"tiny","frames":17,"size":"256x256","steps":20,"tp":1,"first_start_s":0.5,"end_s":3,"outcome":"failed"}"#;
        assert_eq!(parse_json_lines("t.jsonl", json).expect("JSON").len(), 1);
    }

    #[test]
    fn steps_go_to_ddpms_thousand_and_no_further() {
        let row = |steps: u32| format!("{HEADER}0,a,batch,tiny,17,256x256,{steps},1,0\n");
        assert!(parse_csv("t.csv", &row(1000)).is_ok());
        let err = parse_csv("t.csv", &row(1001))
            .expect_err("1001")
            .to_string();
        assert!(err.starts_with("t.csv:2: steps: "), "{err}");
    }

    #[test]
    fn a_bad_row_names_the_file_line_and_field() {
        for (row, field, words) in [
            (
                "-1,a,batch,tiny,17,256x256,20,1,0",
                "arrival_s",
                "is not a time of 0",
            ),
            (
                "0,a,urgent,tiny,17,256x256,20,1,0",
                "qos",
                "interactive, standard or batch",
            ),
            ("0,a,batch,tiny,17,250x256,20,1,0", "size", "width"),
            ("0,a,batch,tiny,0,256x256,20,1,0", "frames", "frames"),
            ("0,a,batch,tiny,17,256x256,20,0,0", "tp", "tp"),
            (
                "0,a,batch,tiny,17,256x256,20,1,5000",
                "priority",
                "priority",
            ),
            ("0,A B,batch,tiny,17,256x256,20,1,0", "queue", "queue"),
            ("0,a,batch,tiny,17,256,20,1,0", "size", "WIDTHxHEIGHT"),
        ] {
            let text = format!("{HEADER}0,ok,batch,tiny,17,256x256,20,1,0\n{row}\n");
            let err = parse_csv("trace.csv", &text).expect_err(row).to_string();
            assert!(
                err.starts_with("trace.csv:3: ") && err.contains(field) && err.contains(words),
                "{row}: {err}"
            );
        }
        let err = parse_csv(
            "trace.csv",
            &format!("{HEADER}zero,a,batch,tiny,17,256x256,20,1,0\n"),
        )
        .expect_err("not a number")
        .to_string();
        assert!(err.starts_with("trace.csv:2: "), "{err}");
        // A number too large for its column names the column, and a column
        // the format lacks is blamed on the header, not on arrival_s.
        let err = parse_csv(
            "trace.csv",
            &format!("{HEADER}0,a,batch,tiny,17,256x256,99999999999,1,0\n"),
        )
        .expect_err("too large")
        .to_string();
        assert!(err.starts_with("trace.csv:2: steps: "), "{err}");
        let extra = "arrival_s,queue,qos,model,frames,size,steps,tp,priority,colour\n";
        let err = parse_csv(
            "trace.csv",
            &format!("{extra}0,a,batch,tiny,17,256x256,20,1,0,red\n"),
        )
        .expect_err("an unknown column")
        .to_string();
        assert!(
            err.contains(": header: ") && err.contains("colour"),
            "{err}"
        );
        let err = parse_json_lines("t.jsonl", "{\"arrival_s\": 1}\n")
            .expect_err("missing")
            .to_string();
        assert!(
            err.starts_with("t.jsonl:1: ") && err.contains("missing field"),
            "{err}"
        );
    }
}

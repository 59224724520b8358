//! `--jobs-out FILE`: one CSV row per job of a run, to check a report or
//! to look at what it summarises (the jobs behind a p99, a queue's
//! preemptions).
//!
//! Columns: `index` (the job's place in the workload, by arrival),
//! `arrival_s`, `queue`, `qos`, `model`, `tp`, `steps`, `first_start_s`,
//! `end_s`, `wait_s` (empty for a job that never started), `preemptions`,
//! `flavor` (of the pool of its last run; empty if it never ran),
//! `device_s` (device-seconds its runs held); with replications, a
//! `replication` column first (1 for the first). Times are seconds from
//! the start of the run, written exactly (a value read back is the one
//! the report used).

use std::io::Write;

use super::engine::SimOutcome;
use super::fleet::Fleet;
use super::workload::JobRequest;

pub struct JobsOut<W: Write> {
    csv: csv::Writer<W>,
    replications: bool,
}

const COLUMNS: [&str; 13] = [
    "index",
    "arrival_s",
    "queue",
    "qos",
    "model",
    "tp",
    "steps",
    "first_start_s",
    "end_s",
    "wait_s",
    "preemptions",
    "flavor",
    "device_s",
];

impl<W: Write> JobsOut<W> {
    /// A writer with its header; `replications`: with a `replication`
    /// column.
    pub fn new(out: W, replications: bool) -> std::io::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        let mut header: Vec<&str> = Vec::with_capacity(COLUMNS.len() + 1);
        if replications {
            header.push("replication");
        }
        header.extend(COLUMNS);
        csv.write_record(&header)?;
        Ok(Self { csv, replications })
    }

    /// Every job of a run; `replication` counts from 0 (written from 1).
    pub fn write_run(
        &mut self,
        replication: usize,
        requests: &[JobRequest],
        outcome: &SimOutcome,
        fleet: &Fleet,
    ) -> std::io::Result<()> {
        let some = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
        for (index, (request, job)) in requests.iter().zip(&outcome.jobs).enumerate() {
            let mut row: Vec<String> = Vec::with_capacity(COLUMNS.len() + 1);
            if self.replications {
                row.push((replication + 1).to_string());
            }
            let flavor = job
                .pool
                .and_then(|p| fleet.pools.get(p))
                .map_or("", |p| p.flavor.as_str());
            row.extend([
                index.to_string(),
                job.arrival_s.to_string(),
                job.queue.clone(),
                job.qos.label().to_string(),
                request.model.clone(),
                job.tp.to_string(),
                request.steps.to_string(),
                some(job.first_start_s),
                some(job.end_s),
                some(job.first_start_s.map(|s| s - job.arrival_s)),
                job.preemptions.to_string(),
                flavor.to_string(),
                job.device_s.to_string(),
            ]);
            self.csv.write_record(&row)?;
        }
        Ok(())
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.csv.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::JobOutcome;
    use crate::testing::pool;
    use genfleet_scheduler::policy::Qos;

    /// A row per job, in the workload's order, with empty cells for what
    /// did not happen and the replication first when asked.
    #[test]
    fn rows_say_what_each_job_did() {
        let request = JobRequest {
            tp: 2,
            ..crate::testing::job(1.5, "product", Qos::Interactive, 20)
        };
        let ran = JobOutcome {
            queue: "product".into(),
            qos: Qos::Interactive,
            arrival_s: 1.5,
            first_start_s: Some(2.25),
            end_s: Some(12.25),
            preemptions: 1,
            tp: 2,
            device_s: 20.5,
            pool: Some(1),
        };
        let never = JobOutcome {
            first_start_s: None,
            end_s: None,
            preemptions: 0,
            device_s: 0.0,
            pool: None,
            ..ran.clone()
        };
        let outcome = SimOutcome {
            jobs: vec![ran, never],
            duration_s: 20.0,
            busy_device_s: vec![0.0, 20.5],
            queue_device_s: Default::default(),
            buckets: Vec::new(),
            cycles: 3,
            stopped_at_s: None,
            node_failures: 0,
        };
        let fleet = Fleet {
            pools: vec![pool("a", 1, 4), pool("b", 1, 4)],
        };
        let requests = [request.clone(), request];
        let mut out = JobsOut::new(Vec::new(), true).expect("header");
        out.write_run(2, &requests, &outcome, &fleet).expect("rows");
        let text = String::from_utf8(out.csv.into_inner().expect("flush")).expect("utf-8");
        assert_eq!(
            text,
            "replication,index,arrival_s,queue,qos,model,tp,steps,first_start_s,end_s,wait_s,preemptions,flavor,device_s\n\
             3,0,1.5,product,interactive,tiny,2,20,2.25,12.25,0.75,1,b,20.5\n\
             3,1,1.5,product,interactive,tiny,2,20,,,,0,,0\n"
        );
    }
}

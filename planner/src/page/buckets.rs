//! The page's time buckets: per bucket of arrival, each class's waits;
//! per bucket, the work arriving and the devices busy.

use genfleet_scheduler::policy::Qos;

use crate::engine::SimOutcome;
use crate::report::Quantiles;
use crate::series;

/// Most buckets of the page's time charts: a day in hours, a week in 6 h,
/// a month in days.
const PAGE_BUCKETS: usize = 32;

/// The page's bucket width: round, about [`PAGE_BUCKETS`] over the run,
/// never finer than the simulation's own buckets (which it sums).
pub fn bucket_width_s(outcome: &SimOutcome) -> f64 {
    let span_ms = (outcome.duration_s * 1000.0).ceil() as i64;
    let page = series::bucket_ms(span_ms, PAGE_BUCKETS) as f64 / 1000.0;
    let sim = outcome.buckets.first().map_or(0.0, |b| b.width_s);
    page.max(sim)
}

fn bucket_count(duration_s: f64, width_s: f64) -> usize {
    ((duration_s / width_s).ceil() as usize).max(1)
}

fn bucket_of(at_s: f64, width_s: f64, count: usize) -> usize {
    ((at_s / width_s).floor().max(0.0) as usize).min(count - 1)
}

/// The waits of the jobs of one class that arrived in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketWaits {
    pub start_s: f64,
    pub width_s: f64,
    pub jobs: usize,
    pub mean_s: f64,
    /// Nearest rank, as the report's quantiles.
    pub p95_s: f64,
    pub max_s: f64,
}

/// Per bucket of arrival, the waits of `qos`'s jobs (arrival to first
/// start; a job never started waits until the end, as in the report):
/// exact, from every job, not sampled.
pub fn bucket_waits(outcome: &SimOutcome, qos: Qos, width_s: f64) -> Vec<BucketWaits> {
    let end = outcome.duration_s;
    let count = bucket_count(end, width_s);
    let mut waits = vec![Vec::new(); count];
    for job in outcome
        .jobs
        .iter()
        .filter(|j| j.qos == qos && j.arrival_s <= end)
    {
        let wait = job.first_start_s.unwrap_or(end) - job.arrival_s;
        waits[bucket_of(job.arrival_s, width_s, count)].push(wait);
    }
    waits
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let start_s = i as f64 * width_s;
            let max_s = w.iter().copied().fold(0.0, f64::max);
            let (jobs, q) = (w.len(), Quantiles::of(w));
            BucketWaits {
                start_s,
                width_s: width_s.min(end - start_s).max(0.0),
                jobs,
                mean_s: q.mean,
                p95_s: q.p95,
                max_s,
            }
        })
        .collect()
}

/// Work arriving and devices busy in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub start_s: f64,
    pub width_s: f64,
    /// Device-seconds the jobs that arrived in the bucket held devices
    /// (on whichever flavor they ran), over its width: the devices that
    /// work keeps busy for the bucket.
    pub demand: f64,
    /// Busy devices per pool: the time-weighted mean and the most at once.
    pub busy_mean: Vec<f64>,
    pub busy_max: Vec<u32>,
}

/// The simulation's buckets summed into the page's, with the work of the
/// jobs arriving in each.
pub fn load(outcome: &SimOutcome, pools: usize, width_s: f64) -> Vec<Load> {
    let end = outcome.duration_s;
    let count = bucket_count(end, width_s);
    let mut out: Vec<Load> = (0..count)
        .map(|i| Load {
            start_s: i as f64 * width_s,
            width_s: width_s.min(end - i as f64 * width_s).max(0.0),
            demand: 0.0,
            busy_mean: vec![0.0; pools],
            busy_max: vec![0; pools],
        })
        .collect();
    let mut covered = vec![0.0; count];
    for b in &outcome.buckets {
        // Round widths nest (the page's is a multiple of the simulation's),
        // so a simulation bucket lies inside one of the page's: its middle
        // says which.
        let i = bucket_of(b.start_s + b.width_s / 2.0, width_s, count);
        covered[i] += b.width_s;
        for p in 0..pools.min(b.busy_mean.len()) {
            out[i].busy_mean[p] += b.busy_mean[p] * b.width_s;
            out[i].busy_max[p] = out[i].busy_max[p].max(b.busy_max[p]);
        }
    }
    for (l, c) in out.iter_mut().zip(&covered) {
        if *c > 0.0 {
            l.busy_mean.iter_mut().for_each(|m| *m /= c);
        }
    }
    for job in outcome.jobs.iter().filter(|j| j.arrival_s <= end) {
        out[bucket_of(job.arrival_s, width_s, count)].demand += job.device_s;
    }
    for l in &mut out {
        l.demand = if l.width_s > 0.0 {
            l.demand / l.width_s
        } else {
            0.0
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::tests::{job, outcome};

    #[test]
    fn per_bucket_waits_are_exact_over_the_jobs_that_arrived_in_each() {
        let outcome = outcome();
        let hours = bucket_waits(&outcome, Qos::Interactive, 3600.0);
        assert_eq!(hours.len(), 3, "7,300 s in hours");
        // First hour: waits 0.4 ms and 60 s; second: 0.5 s and 30 s.
        assert_eq!(hours[0].jobs, 2);
        assert!((hours[0].mean_s - (0.0004 + 60.0) / 2.0).abs() < 1e-9);
        assert!((hours[0].p95_s - 60.0).abs() < 1e-9, "nearest rank of 2");
        assert!((hours[0].max_s - 60.0).abs() < 1e-9);
        assert_eq!(hours[1].jobs, 2);
        assert!((hours[1].mean_s - 15.25).abs() < 1e-9);
        assert!((hours[1].p95_s - 30.0).abs() < 1e-9);
        assert_eq!(hours[2].jobs, 0);
        assert!((hours[2].width_s - 100.0).abs() < 1e-9, "cut at the end");
        // The batch job that never started waits until the end: 300 s.
        let batch = bucket_waits(&outcome, Qos::Batch, 3600.0);
        assert_eq!((batch[0].jobs, batch[1].jobs), (1, 1));
        assert!((batch[1].max_s - 300.0).abs() < 1e-9);
    }

    #[test]
    fn the_p95_of_a_bucket_is_the_nearest_rank_of_its_jobs() {
        let mut outcome = outcome();
        outcome.jobs = (1..=20)
            .map(|i| job(Qos::Standard, f64::from(i), Some(f64::from(i)), 1.0))
            .collect();
        let b = &bucket_waits(&outcome, Qos::Standard, 3600.0)[0];
        assert_eq!(b.jobs, 20);
        // ceil(0.95 x 20) = 19th of 1..=20.
        assert!((b.p95_s - 19.0).abs() < 1e-9);
        assert!((b.mean_s - 10.5).abs() < 1e-9);
        assert!((b.max_s - 20.0).abs() < 1e-9);
    }

    #[test]
    fn demand_is_the_arriving_work_over_the_bucket_and_busy_sums_the_simulations_buckets() {
        let loads = load(&outcome(), 1, 3600.0);
        assert_eq!(loads.len(), 3);
        // First hour: 10 + 900 + 40 device-seconds arrived.
        assert!((loads[0].demand - 950.0 / 3600.0).abs() < 1e-9);
        assert!((loads[1].demand - 119.0 / 3600.0).abs() < 1e-9);
        // Busy: 2 devices for the first half hour, then 1.
        assert!((loads[0].busy_mean[0] - 1.5).abs() < 1e-9);
        assert_eq!(loads[0].busy_max[0], 2);
        assert!((loads[1].busy_mean[0] - 1.0).abs() < 1e-9);
        assert_eq!(loads[1].busy_max[0], 1);
        assert!(
            (loads[2].busy_mean[0] - 1.0).abs() < 1e-9,
            "over the 100 s that ran"
        );
    }
}

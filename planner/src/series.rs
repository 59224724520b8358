//! The simulation's time series: queue depth per class and busy devices
//! per pool, integrated over time into fixed buckets. Sampling at instants
//! made a day whose queue peaked at one job show ticks of 0.1 jobs, and
//! missed what happened between two samples; a bucket's mean and maximum
//! are exact.

use super::engine::Bucket;

/// Round bucket widths, seconds: the shortest that keeps a run to the
/// bucket budget is used.
const WIDTHS_S: [i64; 10] = [
    60, 300, 900, 1_800, 3_600, 7_200, 21_600, 43_200, 86_400, 604_800,
];

/// The bucket width (ms) for a run of `span_ms` in at most `most` buckets.
pub fn bucket_ms(span_ms: i64, most: usize) -> i64 {
    let most = most.max(1) as i64;
    WIDTHS_S
        .iter()
        .map(|s| s * 1000)
        .find(|w| span_ms <= w * most)
        .unwrap_or_else(|| (span_ms / most).max(1))
}

/// Accumulates [`Bucket`]s from states that each hold over an interval.
pub struct Series {
    width_ms: i64,
    pools: usize,
    buckets: Vec<Bucket>,
}

impl Series {
    pub fn new(width_ms: i64, pools: usize) -> Self {
        Self {
            width_ms: width_ms.max(1),
            pools,
            buckets: Vec::new(),
        }
    }

    fn bucket(&mut self, index: usize) -> &mut Bucket {
        while self.buckets.len() <= index {
            let start_ms = self.buckets.len() as i64 * self.width_ms;
            self.buckets.push(Bucket {
                start_s: start_ms as f64 / 1000.0,
                width_s: self.width_ms as f64 / 1000.0,
                pending_mean: [0.0; 3],
                pending_max: [0; 3],
                busy_mean: vec![0.0; self.pools],
                busy_max: vec![0; self.pools],
            });
        }
        &mut self.buckets[index]
    }

    /// The state `pending` (per class) and `busy` (per pool) held from
    /// `from` to `until`, ms.
    pub fn add(&mut self, from: i64, until: i64, pending: &[u32; 3], busy: &[u32]) {
        let mut at = from.max(0);
        // An instant still counts toward the maximum.
        let last = until.max(at + 1);
        while at < last {
            let index = (at / self.width_ms) as usize;
            let end = ((index as i64 + 1) * self.width_ms).min(last);
            let share = if until > from {
                (end - at) as f64 / self.width_ms as f64
            } else {
                0.0
            };
            let bucket = self.bucket(index);
            for (class, &n) in pending.iter().enumerate() {
                bucket.pending_mean[class] += f64::from(n) * share;
                bucket.pending_max[class] = bucket.pending_max[class].max(n);
            }
            for (pool, &n) in busy.iter().enumerate() {
                bucket.busy_mean[pool] += f64::from(n) * share;
                bucket.busy_max[pool] = bucket.busy_max[pool].max(n);
            }
            at = end;
        }
    }

    /// The buckets up to `end_ms`; the last one, cut short by the end of
    /// the run, has its means over the part that ran.
    pub fn finish(mut self, end_ms: i64) -> Vec<Bucket> {
        if let Some(last) = self.buckets.last_mut() {
            let start_ms = (last.start_s * 1000.0).round() as i64;
            let ran_ms = (end_ms - start_ms).clamp(1, self.width_ms);
            if ran_ms < self.width_ms {
                let scale = self.width_ms as f64 / ran_ms as f64;
                last.pending_mean.iter_mut().for_each(|m| *m *= scale);
                last.busy_mean.iter_mut().for_each(|m| *m *= scale);
                last.width_s = ran_ms as f64 / 1000.0;
            }
        }
        self.buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_the_time_weighted_mean_and_the_peak() {
        let mut series = Series::new(60_000, 1);
        // 1 job waits for 6 s of the first minute, then none; 4 devices
        // busy for 30 s, then 2.
        series.add(0, 6_000, &[1, 0, 0], &[4]);
        series.add(6_000, 30_000, &[0, 0, 0], &[4]);
        series.add(30_000, 90_000, &[0, 0, 0], &[2]);
        let buckets = series.finish(120_000);
        assert_eq!(buckets.len(), 2);
        assert!((buckets[0].pending_mean[0] - 0.1).abs() < 1e-9);
        assert_eq!(buckets[0].pending_max[0], 1, "the peak is kept");
        assert!((buckets[0].busy_mean[0] - 3.0).abs() < 1e-9);
        assert_eq!(buckets[0].busy_max[0], 4);
        // The second minute: 2 busy for the 30 s the run covered of it,
        // and the run ended at 120 s, so the mean is over the whole minute.
        assert!((buckets[1].busy_mean[0] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_short_last_bucket_averages_over_the_part_that_ran() {
        let mut series = Series::new(60_000, 1);
        series.add(0, 90_000, &[2, 0, 0], &[1]);
        let buckets = series.finish(90_000);
        assert_eq!(buckets.len(), 2);
        assert!((buckets[1].pending_mean[0] - 2.0).abs() < 1e-9);
        assert!((buckets[1].width_s - 30.0).abs() < 1e-9);
    }

    #[test]
    fn widths_are_round_and_keep_to_the_budget() {
        assert_eq!(bucket_ms(3_600_000, 96), 60_000);
        assert_eq!(bucket_ms(86_400_000, 96), 900_000);
        assert_eq!(bucket_ms(30 * 86_400_000, 96), 43_200_000);
    }
}

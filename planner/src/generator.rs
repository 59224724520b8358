//! A workload made from a description instead of a trace: per stream (a
//! queue and class) a mean arrival rate, an optional shape over the hours
//! of the day, bursts, and a mix of job sizes; the same seed gives the
//! same jobs.
//!
//! ```yaml
//! seed: 7
//! duration: 24h
//! streams:
//!   - queue: product
//!     qos: interactive
//!     rate_per_hour: 600
//!     # optional: 24 multipliers, hour 0 first (their mean is taken as 1)
//!     daily_shape: [0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 0.8, 1.1, 1.3, 1.4, 1.4, 1.4,
//!                   1.4, 1.4, 1.4, 1.4, 1.4, 1.3, 1.3, 1.3, 1.2, 1.0, 0.7, 0.5]
//!     bursts: [{ at: 14h, duration: 20m, factor: 4 }]
//!     mix:
//!       - { weight: 3, model: tiny, frames: 17, size: 256x256, steps: 20, tp: 1 }
//!       - { weight: 1, model: wan2.1-1.3b, frames: 33, size: 832x480, steps: 30, tp: 2 }
//! ```
//!
//! Arrivals are a Poisson process whose rate follows the shape and the
//! bursts (drawn by thinning: candidates at the peak rate, each kept with
//! the ratio of the rate at its time to the peak).

use std::path::Path;
use std::time::Duration;

use genfleet_scheduler::policy::Qos;
use genfleet_scheduler::spec;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::workload::JobRequest;
use super::InputError;

/// Most jobs one description may make (a typo in a rate should not fill
/// the memory).
const MAX_JOBS: usize = 20_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratorDoc {
    seed: u64,
    duration: String,
    streams: Vec<StreamDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamDoc {
    queue: String,
    qos: String,
    rate_per_hour: f64,
    #[serde(default)]
    daily_shape: Option<Vec<f64>>,
    #[serde(default)]
    bursts: Vec<BurstDoc>,
    mix: Vec<SizeDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BurstDoc {
    at: String,
    duration: String,
    factor: f64,
}

/// `24h`, `90m`, `30s` as seconds.
fn seconds(text: &str) -> Result<f64, String> {
    humantime::parse_duration(text.trim())
        .map(|d: Duration| d.as_secs_f64())
        .map_err(|e| format!("{text:?}: {e} (write it like 24h, 90m or 30s)"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeDoc {
    weight: f64,
    model: String,
    frames: u32,
    size: String,
    steps: u32,
    tp: u32,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    guidance: Option<f32>,
}

/// One stream, checked.
#[derive(Clone)]
struct Stream {
    rate_per_s: f64,
    /// Multiplier per hour of the day, mean 1.
    shape: Vec<f64>,
    bursts: Vec<(f64, f64, f64)>,
    /// (cumulative weight, job template)
    mix: Vec<(f64, JobRequest)>,
}

impl Stream {
    fn rate_at(&self, t: f64) -> f64 {
        let hour = ((t / 3600.0).floor() as usize) % self.shape.len().max(1);
        let shape = self.shape.get(hour).copied().unwrap_or(1.0);
        let burst: f64 = self
            .bursts
            .iter()
            .filter(|(at, length, _)| t >= *at && t < at + length)
            .map(|(_, _, factor)| *factor)
            .product();
        self.rate_per_s * shape * burst
    }

    fn peak_rate(&self) -> f64 {
        let shape = self.shape.iter().copied().fold(1.0f64, f64::max);
        let bursts: f64 = self.bursts.iter().map(|b| b.2.max(1.0)).product();
        self.rate_per_s * shape * bursts
    }

    fn pick(&self, rng: &mut impl Rng) -> &JobRequest {
        let total = self.mix.last().map_or(0.0, |(w, _)| *w);
        let x = rng.random::<f64>() * total;
        let index = self
            .mix
            .partition_point(|(w, _)| *w <= x)
            .min(self.mix.len() - 1);
        &self.mix[index].1
    }
}

pub fn read_generator(path: &Path) -> Result<Vec<JobRequest>, InputError> {
    read_description(path)?.jobs(None)
}

/// The description in `path`, checked, to draw workloads from.
pub fn read_description(path: &Path) -> Result<Description, InputError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InputError::io(&file, e))?;
    Description::parse(&file, &text)
}

/// The jobs a description makes with its own seed, sorted by arrival.
pub fn generate(file: &str, text: &str) -> Result<Vec<JobRequest>, InputError> {
    Description::parse(file, text)?.jobs(None)
}

/// A checked description: the same one drawn with other seeds gives
/// other days of the same demand (a plan's replications).
#[derive(Clone)]
pub struct Description {
    file: String,
    seed: u64,
    duration_s: f64,
    streams: Vec<Stream>,
}

impl Description {
    pub fn parse(file: &str, text: &str) -> Result<Self, InputError> {
        let doc: GeneratorDoc = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line() as u64);
            InputError::at(file, line, "workload", &e.to_string())
        })?;
        let duration =
            seconds(&doc.duration).map_err(|e| InputError::at(file, 0, "duration", &e))?;
        if duration <= 0.0 {
            return Err(InputError::at(
                file,
                0,
                "duration",
                "give a positive duration, e.g. 24h",
            ));
        }
        if doc.streams.is_empty() {
            return Err(InputError::at(
                file,
                0,
                "streams",
                "the workload has no streams",
            ));
        }
        let streams = doc
            .streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| check_stream(file, i, s))
            .collect::<Result<Vec<_>, _>>()?;
        let expected: f64 = streams.iter().map(|s| s.peak_rate() * duration).sum();
        if expected > MAX_JOBS as f64 {
            return Err(InputError::at(
                file,
                0,
                "streams",
                &format!("about {expected:.0} jobs at the peak rates; at most {MAX_JOBS}"),
            ));
        }
        Ok(Self {
            file: file.to_string(),
            seed: doc.seed,
            duration_s: duration,
            streams,
        })
    }

    /// The description's own seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The jobs drawn with `seed` (`None`: the description's), sorted by
    /// arrival.
    pub fn jobs(&self, seed: Option<u64>) -> Result<Vec<JobRequest>, InputError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.unwrap_or(self.seed));
        let mut jobs = Vec::new();
        for stream in &self.streams {
            let peak = stream.peak_rate();
            if peak <= 0.0 {
                continue;
            }
            let mut t = 0.0;
            loop {
                t += -(1.0 - rng.random::<f64>()).ln() / peak;
                if t >= self.duration_s {
                    break;
                }
                if rng.random::<f64>() * peak < stream.rate_at(t) {
                    let mut job = stream.pick(&mut rng).clone();
                    job.arrival_s = t;
                    jobs.push(job);
                }
            }
        }
        if jobs.is_empty() {
            return Err(InputError::at(
                &self.file,
                0,
                "streams",
                "the streams make no job in the duration: raise a rate or the duration",
            ));
        }
        jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        Ok(jobs)
    }
}

fn check_stream(file: &str, index: usize, s: StreamDoc) -> Result<Stream, InputError> {
    let at = |field: &str, why: String| {
        InputError::at(file, 0, &format!("streams[{index}].{field}"), &why)
    };
    let qos = Qos::parse(&s.qos).ok_or_else(|| {
        at(
            "qos",
            format!("{:?} is not interactive, standard or batch", s.qos),
        )
    })?;
    if !s.rate_per_hour.is_finite() || s.rate_per_hour < 0.0 {
        return Err(at(
            "rate_per_hour",
            format!("{}: give a rate of at least 0", s.rate_per_hour),
        ));
    }
    let shape = match s.daily_shape {
        None => vec![1.0],
        Some(shape) => {
            if shape.len() != 24 || shape.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(at(
                    "daily_shape",
                    "give 24 multipliers of at least 0, hour 0 first".into(),
                ));
            }
            let mean = shape.iter().sum::<f64>() / 24.0;
            if mean <= 0.0 {
                return Err(at("daily_shape", "the multipliers are all 0".into()));
            }
            shape.iter().map(|v| v / mean).collect()
        }
    };
    let mut bursts = Vec::new();
    for (b, burst) in s.bursts.iter().enumerate() {
        if !burst.factor.is_finite() || burst.factor < 0.0 {
            return Err(at(
                &format!("bursts[{b}].factor"),
                format!("{}: give a factor of at least 0", burst.factor),
            ));
        }
        let at_s = seconds(&burst.at).map_err(|e| at(&format!("bursts[{b}].at"), e))?;
        let length =
            seconds(&burst.duration).map_err(|e| at(&format!("bursts[{b}].duration"), e))?;
        bursts.push((at_s, length, burst.factor));
    }
    if s.mix.is_empty() {
        return Err(at("mix", "a stream needs at least one job size".into()));
    }
    let mut mix = Vec::new();
    let mut total = 0.0;
    for (m, size) in s.mix.into_iter().enumerate() {
        let field = |f: &str| format!("mix[{m}].{f}");
        if !size.weight.is_finite() || size.weight <= 0.0 {
            return Err(at(
                &field("weight"),
                format!("{}: give a positive weight", size.weight),
            ));
        }
        let (width, height) =
            genfleet_scheduler::spec::parse_size(&size.size).map_err(|e| at(&field("size"), e))?;
        if size.tp == 0 {
            return Err(at(&field("tp"), "0: a job needs at least 1 device".into()));
        }
        let job = JobRequest {
            arrival_s: 0.0,
            queue: s.queue.clone(),
            qos,
            priority: size.priority,
            model: size.model,
            frames: size.frames,
            width,
            height,
            steps: size.steps,
            tp: size.tp,
            guidance: size.guidance.unwrap_or(spec::DEFAULT_GUIDANCE),
            line: 0,
        };
        spec::validate(&job.spec()).map_err(|e| at(&field("job"), e.to_string()))?;
        total += size.weight;
        mix.push((total, job));
    }
    Ok(Stream {
        rate_per_s: s.rate_per_hour / 3600.0,
        shape,
        bursts,
        mix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "seed: 7\nduration: 10h\nstreams:\n  - queue: product\n    qos: interactive\n    rate_per_hour: 360\n    bursts: [{ at: 5h, duration: 1h, factor: 4 }]\n    mix:\n      - { weight: 3, model: tiny, frames: 17, size: 256x256, steps: 20, tp: 1 }\n      - { weight: 1, model: medium, frames: 33, size: 512x512, steps: 30, tp: 2 }\n";

    #[test]
    fn a_description_makes_the_same_jobs_for_a_seed_at_its_rates() {
        let jobs = generate("w.yaml", DOC).expect("valid");
        assert_eq!(
            jobs,
            generate("w.yaml", DOC).expect("valid"),
            "deterministic"
        );
        // 9 hours at 360/h and one at 4 x 360/h: about 4,680 jobs.
        let n = jobs.len() as f64;
        assert!((n - 4680.0).abs() < 4.0 * 4680f64.sqrt(), "{n} jobs");
        let in_burst = jobs
            .iter()
            .filter(|j| (18_000.0..21_600.0).contains(&j.arrival_s))
            .count() as f64;
        assert!(
            (in_burst - 1440.0).abs() < 4.0 * 1440f64.sqrt(),
            "{in_burst} in the burst"
        );
        let medium = jobs.iter().filter(|j| j.model == "medium").count() as f64 / n;
        assert!((medium - 0.25).abs() < 0.03, "{medium} of them medium");
        assert!(jobs.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
        let other = generate("w.yaml", &DOC.replace("seed: 7", "seed: 8")).expect("valid");
        assert_ne!(jobs, other, "another seed, other jobs");
    }

    /// A description drawn with another seed is the description written
    /// with that seed: replications are the days its seed would give.
    #[test]
    fn another_seed_draws_what_the_description_with_that_seed_makes() {
        let description = Description::parse("w.yaml", DOC).expect("valid");
        assert_eq!(description.seed(), 7);
        assert_eq!(
            description.jobs(None).expect("jobs"),
            generate("w.yaml", DOC).expect("valid")
        );
        assert_eq!(
            description.jobs(Some(8)).expect("jobs"),
            generate("w.yaml", &DOC.replace("seed: 7", "seed: 8")).expect("valid")
        );
    }

    #[test]
    fn bad_descriptions_name_the_field() {
        for (from, to, expected) in [
            ("qos: interactive", "qos: urgent", "streams[0].qos"),
            (
                "rate_per_hour: 360",
                "rate_per_hour: -1",
                "streams[0].rate_per_hour",
            ),
            ("size: 256x256", "size: 250x256", "streams[0].mix[0].job"),
            (
                "steps: 20, tp: 1",
                "steps: 20, tp: 0",
                "streams[0].mix[0].tp",
            ),
            ("weight: 3", "weight: 0", "streams[0].mix[0].weight"),
            ("duration: 10h", "duration: 0s", "duration"),
            ("factor: 4", "factor: -4", "streams[0].bursts[0].factor"),
            ("rate_per_hour: 360", "rate_per_hour: 0", "make no job"),
        ] {
            let err = generate("w.yaml", &DOC.replace(from, to))
                .expect_err(to)
                .to_string();
            assert!(
                err.starts_with("w.yaml") && err.contains(expected),
                "{to}: {err}"
            );
        }
    }
}

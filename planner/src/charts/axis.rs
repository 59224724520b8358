//! Axes: linear, logarithmic and clock ranges with round ticks, labelled
//! as the text tables write numbers and times.

use crate::table::seconds;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
    /// A share from 0 to `hi` (below 1) by its nines: 90%, 99% and 99.9%
    /// are equally apart, so a tail of a few percent is as tall as the rest.
    Nines,
}

/// An axis: its range, its ticks with their labels, and its title.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub scale: Scale,
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<(f64, String)>,
    pub title: String,
}

/// A round step (1, 2 or 5 times a power of ten) giving about `n` ticks.
fn nice_step(range: f64, n: f64) -> f64 {
    let raw = (range / n).max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A round time as the table writes it, without a trailing ".0": 1ms,
/// 10s, 60s, 10m.
pub fn tick_time(s: f64) -> String {
    let text = seconds(s);
    match text.strip_suffix(|c: char| c.is_ascii_alphabetic()) {
        Some(number) if number.ends_with(".0") => {
            format!("{}{}", &number[..number.len() - 2], &text[number.len()..])
        }
        _ => text,
    }
}

/// Time into the run: hours for the first two days (0h, 14h30, 36h),
/// days and hours after (3d, 3d12h).
pub fn clock(s: f64) -> String {
    let minutes = (s / 60.0).round() as i64;
    let (hours, mins) = (minutes / 60, minutes % 60);
    let mut out = if hours < 48 {
        format!("{hours}h")
    } else if hours % 24 == 0 && mins == 0 {
        format!("{}d", hours / 24)
    } else {
        format!("{}d{}h", hours / 24, hours % 24)
    };
    if mins > 0 {
        out.push_str(&format!("{mins:02}"));
    }
    out
}

impl Axis {
    /// From `lo` to `hi` rounded up to a round step.
    pub fn linear(lo: f64, hi: f64, title: &str, label: fn(f64) -> String) -> Self {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let step = nice_step(hi - lo, 5.0);
        let hi = lo + ((hi - lo) / step - 1e-9).ceil() * step;
        let count = ((hi - lo) / step).round() as usize;
        let ticks = (0..=count)
            .map(|i| lo + i as f64 * step)
            .map(|v| (v, label(v)))
            .collect();
        Self {
            scale: Scale::Linear,
            lo,
            hi,
            ticks,
            title: title.into(),
        }
    }

    /// A share from 0 to 100%.
    pub fn share(title: &str) -> Self {
        let ticks = (0..=4)
            .map(|i| (f64::from(i) / 4.0, format!("{}%", i * 25)))
            .collect();
        Self {
            scale: Scale::Linear,
            lo: 0.0,
            hi: 1.0,
            ticks,
            title: title.into(),
        }
    }

    /// Time into a run of `span_s` seconds, ticked at round hours.
    pub fn clock(span_s: f64, title: &str) -> Self {
        let span = span_s.max(60.0);
        let step = [
            60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0,
            172_800.0, 604_800.0,
        ]
        .into_iter()
        .find(|step| span / step <= 12.0)
        .unwrap_or(span / 8.0);
        let count = (span / step + 1e-9).floor() as usize;
        let ticks = (0..=count)
            .map(|i| i as f64 * step)
            .map(|v| (v, clock(v)))
            .collect();
        Self {
            scale: Scale::Linear,
            lo: 0.0,
            hi: span,
            ticks,
            title: title.into(),
        }
    }

    /// Whole decades around `lo..hi` (both above 0), labelled as numbers.
    pub fn log(lo: f64, hi: f64, title: &str) -> Self {
        let lo10 = lo.max(1e-9).log10().floor() as i32;
        let hi10 = (hi.max(lo).log10().ceil() as i32).max(lo10 + 1);
        // Every other decade past eight, so the labels keep apart.
        let every = if hi10 - lo10 > 8 { 2 } else { 1 };
        let ticks = (lo10..=hi10)
            .filter(|k| (k - lo10) % every == 0)
            .map(|k| (10f64.powi(k), decade(k)))
            .collect();
        Self {
            scale: Scale::Log,
            lo: 10f64.powi(lo10),
            hi: 10f64.powi(hi10),
            ticks,
            title: title.into(),
        }
    }

    /// Seconds on a log scale from `lo_s` (at least 1 ms) to `hi_s`,
    /// ticked at round times: 1ms, 10ms, ..., 1s, 10s, 60s, 10m, 60m, 10h.
    pub fn log_time(lo_s: f64, hi_s: f64, title: &str) -> Self {
        const ROUND: [f64; 12] = [
            0.001,
            0.01,
            0.1,
            1.0,
            10.0,
            60.0,
            600.0,
            3600.0,
            36000.0,
            86400.0,
            864_000.0,
            8_640_000.0,
        ];
        let lo_s = lo_s.max(ROUND[0]);
        let lo = ROUND
            .iter()
            .rev()
            .copied()
            .find(|r| *r <= lo_s * (1.0 + 1e-9));
        let lo = lo.unwrap_or(ROUND[0]);
        let hi = ROUND
            .iter()
            .copied()
            .find(|r| *r >= hi_s * (1.0 - 1e-9) && *r > lo)
            .unwrap_or(ROUND[ROUND.len() - 1]);
        let ticks = ROUND
            .iter()
            .copied()
            .filter(|r| *r >= lo && *r <= hi)
            .map(|r| (r, tick_time(r)))
            .collect();
        Self {
            scale: Scale::Log,
            lo,
            hi,
            ticks,
            title: title.into(),
        }
    }

    /// A share from 0 to 1 - 10^-`nines` (at least 1), ticked at 0%,
    /// 50%, 90%, 99%, ...: a percentile reads off where a curve crosses
    /// its tick.
    pub fn nines(nines: u32, title: &str) -> Self {
        let nines = nines.max(1) as i32;
        let mut ticks = vec![(0.0, "0%".to_string()), (0.5, "50%".to_string())];
        for k in 1..=nines {
            let share = 1.0 - 10f64.powi(-k);
            let digits = (k - 2).max(0) as usize;
            ticks.push((share, format!("{:.digits$}%", share * 100.0)));
        }
        Self {
            scale: Scale::Nines,
            lo: 0.0,
            hi: 1.0 - 10f64.powi(-nines),
            ticks,
            title: title.into(),
        }
    }

    /// Where `v` falls along the axis, 0 to 1 (clamped to the axis).
    pub fn unit(&self, v: f64) -> f64 {
        let u = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => {
                let v = v.max(self.lo);
                (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
            }
            Scale::Nines => {
                let nines = |share: f64| -(1.0 - share).max(1.0 - self.hi).log10();
                nines(v) / nines(self.hi)
            }
        };
        if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

fn decade(k: i32) -> String {
    match k {
        k if k < 0 => format!("{}", 10f64.powi(k)),
        0..=3 => format!("{}", 10i64.pow(k as u32)),
        4 | 5 => format!("{}k", 10i64.pow(k as u32 - 3)),
        _ => format!("1e{k}"),
    }
}

/// A tick's number, without the float noise of adding steps (0.30000000000000004).
pub fn number(v: f64) -> String {
    format!("{}", (v * 1e6).round() / 1e6)
}

//! The plan's charts (SVG, drawn with plotters) and its one-file HTML
//! report with the charts inline.

use plotters::prelude::*;

use super::engine::SimOutcome;
use super::fleet::Fleet;
use super::report::Report;
use genfleet_scheduler::policy::Qos;

const SIZE: (u32, u32) = (760, 360);
const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Lines = Vec<(String, Vec<(f64, f64)>)>;

fn class_color(qos: Qos) -> RGBColor {
    match qos {
        Qos::Interactive => COLORS[0],
        Qos::Standard => COLORS[1],
        Qos::Batch => COLORS[2],
    }
}

/// A line chart of `lines` as SVG text; an empty chart if there is nothing.
fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &Lines,
    colors: &[RGBColor],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let points = lines.iter().flat_map(|(_, p)| p.iter());
        let (mut x_max, mut y_max) = (0f64, 0f64);
        for &(x, y) in points {
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max.max(1e-9), 0f64..(y_max * 1.05).max(1e-9))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(e)?;
        for (i, (name, points)) in lines.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Waiting jobs per class over time.
pub fn queue_depth(outcome: &SimOutcome) -> Result<String, String> {
    let mut lines = Lines::new();
    let mut colors = Vec::new();
    for (i, qos) in Qos::ALL.iter().enumerate().rev() {
        if outcome.jobs.iter().any(|j| j.qos == *qos) {
            let points = outcome
                .buckets
                .iter()
                .map(|b| (b.start_s / 3600.0, b.pending_mean[i]))
                .collect();
            lines.push((qos.label().to_string(), points));
            colors.push(class_color(*qos));
        }
    }
    line_chart("Jobs waiting", "hours", "jobs", &lines, &colors)
}

/// Share of each flavor's devices held by jobs over time.
pub fn utilization(outcome: &SimOutcome, fleet: &Fleet) -> Result<String, String> {
    let lines: Lines = fleet
        .pools
        .iter()
        .enumerate()
        .map(|(p, pool)| {
            let devices = (f64::from(pool.nodes) * f64::from(pool.devices_per_node)).max(1.0);
            let points = outcome
                .buckets
                .iter()
                .map(|b| (b.start_s / 3600.0, 100.0 * b.busy_mean[p] / devices))
                .collect();
            (pool.flavor.clone(), points)
        })
        .collect();
    line_chart(
        "Devices busy",
        "hours",
        "% of the flavor's devices",
        &lines,
        &COLORS,
    )
}

/// The distribution of waits per class: the share of jobs that waited at
/// most x seconds.
pub fn wait_cdf(outcome: &SimOutcome) -> Result<String, String> {
    let end = outcome.duration_s;
    let mut lines = Lines::new();
    let mut colors = Vec::new();
    for qos in Qos::ALL.iter().rev() {
        let mut waits: Vec<f64> = outcome
            .jobs
            .iter()
            .filter(|j| j.qos == *qos)
            .map(|j| j.first_start_s.unwrap_or(end) - j.arrival_s)
            .collect();
        if waits.is_empty() {
            continue;
        }
        waits.sort_by(f64::total_cmp);
        let n = waits.len() as f64;
        // At most 400 points per line: enough for the eye.
        let stride = (waits.len() / 400).max(1);
        let mut points: Vec<(f64, f64)> = waits
            .iter()
            .enumerate()
            .step_by(stride)
            .map(|(i, w)| (*w, (i + 1) as f64 / n))
            .collect();
        points.push((waits[waits.len() - 1], 1.0));
        lines.push((qos.label().to_string(), points));
        colors.push(class_color(*qos));
    }
    line_chart(
        "Wait before the first step",
        "seconds",
        "share of jobs",
        &lines,
        &colors,
    )
}

/// Cost per hour against the worst target's actual over its limit, one
/// point per fleet of a sweep (below 1: every target met).
pub fn cost_curve(points: &[super::sweep::SweepPoint]) -> Result<String, String> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.cost_per_hour, p.worst_ratio))
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lines = vec![("worst target, actual / limit".to_string(), sorted)];
    line_chart(
        "Cost against service level",
        "cost per hour",
        "actual / limit (1 = just met)",
        &lines,
        &COLORS,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One self-contained HTML file: the summary, the tables, the charts.
pub fn html(report: &Report, table: &str, charts: &[(&str, String)]) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>genfleet plan</title>\n<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}pre{background:#f6f6f6;padding:1em;overflow-x:auto}.met{color:#2a7d2a}.missed{color:#b22}</style></head><body>\n<h1>genfleet plan</h1>\n",
    );
    out.push_str(&format!(
        "<p>{} jobs over {:.1} simulated hours; cost {:.2}.</p>\n",
        report.jobs,
        report.duration_s / 3600.0,
        report.cost
    ));
    if !report.targets.is_empty() {
        out.push_str("<ul>\n");
        for t in &report.targets {
            let (class, word) = if t.met {
                ("met", "met")
            } else {
                ("missed", "MISSED")
            };
            out.push_str(&format!(
                "<li class=\"{class}\">{word}: {} (actual {:.1} s)</li>\n",
                escape(&t.target),
                t.actual_s
            ));
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&format!("<pre>{}</pre>\n", escape(table)));
    for (title, svg) in charts {
        out.push_str(&format!("<h2>{}</h2>\n{svg}\n", escape(title)));
    }
    out.push_str("</body></html>\n");
    out
}

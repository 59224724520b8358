//! The drawing kit: a [`Figure`] holds axes and marks in data
//! coordinates and lays them out as SVG: the legend above the plot, notes
//! under it, reference lines and point labels placed by [`labels`].

// Writing into a String cannot fail: `write!`'s results are ignored.
use std::fmt::Write;

use super::axis::Axis;

mod labels;

use labels::text_w;
pub use labels::{Placed, Rect};

/// Width of every chart (the SVG scales to its container).
const WIDTH: f64 = 900.0;
const RIGHT: f64 = 24.0;
/// An estimate of one character's width at the charts' 11 px: enough to
/// keep labels apart (DejaVu Sans, the widest common fallback, is ~6.4).
const CHAR_W: f64 = 6.6;
const LINE_H: f64 = 13.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl std::fmt::Display for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

pub const RED: Color = Color(200, 40, 40);
pub const BLUE: Color = Color(31, 110, 180);
pub const GREEN: Color = Color(40, 140, 60);
pub const GREY: Color = Color(110, 110, 110);
pub const INK: Color = Color(34, 34, 34);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

impl Stroke {
    fn dash(self) -> &'static str {
        match self {
            Stroke::Solid => "",
            Stroke::Dashed => " stroke-dasharray=\"7 4\"",
            Stroke::Dotted => " stroke-dasharray=\"2 3\"",
        }
    }
}

/// What a legend entry shows.
#[derive(Debug, Clone, Copy)]
pub enum Swatch {
    Line(Color, Stroke),
    Area(Color),
    Dot { color: Color, filled: bool },
    Ring,
}

#[derive(Debug, Clone)]
enum Mark {
    Line {
        points: Vec<(f64, f64)>,
        color: Color,
        stroke: Stroke,
        width: f64,
    },
    Area {
        lower: Vec<(f64, f64)>,
        upper: Vec<(f64, f64)>,
        color: Color,
    },
    Bar {
        x0: f64,
        x1: f64,
        y: f64,
        color: Color,
    },
    HLine {
        y: f64,
        color: Color,
        label: String,
    },
    VLine {
        x: f64,
        color: Color,
        label: String,
    },
}

#[derive(Debug, Clone)]
struct Marker {
    at: (f64, f64),
    color: Color,
    filled: bool,
    ring: bool,
    label: String,
}

/// Text safe inside SVG and HTML elements and double-quoted attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A chart being drawn: axes, marks in data coordinates, a legend above
/// the plot, notes under it.
#[derive(Debug, Clone)]
pub struct Figure {
    title: String,
    plot_h: f64,
    pub x: Axis,
    pub y: Axis,
    legend: Vec<(String, Swatch)>,
    marks: Vec<Mark>,
    markers: Vec<Marker>,
    notes: Vec<String>,
}

/// Where everything goes, in pixels.
struct Frame {
    plot: Rect,
    height: f64,
    legend_top: f64,
    legend_rows: Vec<Vec<(f64, usize)>>,
}

impl Figure {
    pub fn new(title: &str, x: Axis, y: Axis) -> Self {
        Self {
            title: title.into(),
            plot_h: 230.0,
            x,
            y,
            legend: Vec::new(),
            marks: Vec::new(),
            markers: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[must_use]
    pub fn plot_height(mut self, h: f64) -> Self {
        self.plot_h = h;
        self
    }

    pub fn legend(&mut self, name: &str, swatch: Swatch) {
        self.legend.push((name.into(), swatch));
    }

    /// A line through `points`; a non-finite y breaks it (a gap).
    pub fn line(&mut self, points: Vec<(f64, f64)>, color: Color, stroke: Stroke, width: f64) {
        self.marks.push(Mark::Line {
            points,
            color,
            stroke,
            width,
        });
    }

    /// A shaded band between two lines over the same xs.
    pub fn area(&mut self, lower: Vec<(f64, f64)>, upper: Vec<(f64, f64)>, color: Color) {
        self.marks.push(Mark::Area {
            lower,
            upper,
            color,
        });
    }

    pub fn bar(&mut self, x0: f64, x1: f64, y: f64, color: Color) {
        self.marks.push(Mark::Bar { x0, x1, y, color });
    }

    /// A horizontal reference line, its label written on it.
    pub fn hline(&mut self, y: f64, color: Color, label: &str) {
        self.marks.push(Mark::HLine {
            y,
            color,
            label: label.into(),
        });
    }

    pub fn vline(&mut self, x: f64, color: Color, label: &str) {
        self.marks.push(Mark::VLine {
            x,
            color,
            label: label.into(),
        });
    }

    /// A point with a label placed next to it where it overlaps nothing.
    pub fn marker(&mut self, at: (f64, f64), color: Color, filled: bool, ring: bool, label: &str) {
        self.markers.push(Marker {
            at,
            color,
            filled,
            ring,
            label: label.into(),
        });
    }

    pub fn note(&mut self, text: &str) {
        self.notes.push(text.into());
    }

    fn frame(&self) -> Frame {
        let widest = self
            .y
            .ticks
            .iter()
            .map(|(_, t)| text_w(t))
            .fold(0.0, f64::max);
        let left = 26.0 + widest + 8.0;
        let plot_w = WIDTH - left - RIGHT;
        let mut rows: Vec<Vec<(f64, usize)>> = vec![Vec::new()];
        let mut x = left;
        for (i, (name, _)) in self.legend.iter().enumerate() {
            let w = 26.0 + text_w(name) + 18.0;
            if x + w > left + plot_w && x > left {
                rows.push(Vec::new());
                x = left;
            }
            if let Some(row) = rows.last_mut() {
                row.push((x, i));
            }
            x += w;
        }
        rows.retain(|r| !r.is_empty());
        let legend_top = 38.0;
        let top = legend_top + rows.len() as f64 * 18.0 + 10.0;
        let bottom = 20.0 + 18.0 + self.notes.len() as f64 * 15.0 + 10.0;
        Frame {
            plot: Rect {
                x: left,
                y: top,
                w: plot_w,
                h: self.plot_h,
            },
            height: top + self.plot_h + bottom,
            legend_top,
            legend_rows: rows,
        }
    }

    /// The plot area, in pixels.
    pub fn plot(&self) -> Rect {
        self.frame().plot
    }

    /// Where a value is drawn, in pixels.
    pub fn to_px(&self, at: (f64, f64)) -> (f64, f64) {
        self.px(&self.frame().plot, at)
    }

    fn px(&self, plot: &Rect, (x, y): (f64, f64)) -> (f64, f64) {
        (
            plot.x + self.x.unit(x) * plot.w,
            plot.y + (1.0 - self.y.unit(y)) * plot.h,
        )
    }

    /// The chart as one `<svg>` element.
    pub fn svg(&self) -> String {
        let frame = self.frame();
        let plot = frame.plot;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {WIDTH} {h:.0}\" width=\"{WIDTH}\" height=\"{h:.0}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"{t}\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n<text x=\"{l}\" y=\"20\" font-size=\"14\" font-weight=\"bold\" fill=\"{INK}\">{t}</text>\n",
            h = frame.height,
            t = escape(&self.title),
            l = plot.x,
        );
        self.draw_legend(&mut s, &frame);
        self.draw_axes(&mut s, &frame);
        for mark in &self.marks {
            self.draw_mark(&mut s, &plot, mark);
        }
        for m in &self.markers {
            let (x, y) = self.px(&plot, m.at);
            let fill = if m.filled {
                m.color.to_string()
            } else {
                "#fff".into()
            };
            let _ = writeln!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{fill}\" stroke=\"{}\" stroke-width=\"1.8\"/>",
                m.color
            );
            if m.ring {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"9\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"2\"/>"
                );
            }
        }
        for p in self.place(&frame) {
            let weight = if p.class == "ref" {
                " font-weight=\"bold\""
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "<text class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{}\" fill=\"{}\"{weight}>{}</text>",
                p.class,
                p.at.0,
                p.at.1,
                p.anchor,
                p.color,
                escape(&p.text)
            );
        }
        let mut y = plot.y + plot.h + 20.0 + 18.0 + 15.0;
        for note in &self.notes {
            let _ = writeln!(
                s,
                "<text class=\"note\" x=\"{:.1}\" y=\"{y:.1}\" fill=\"{GREY}\">{}</text>",
                plot.x,
                escape(note)
            );
            y += 15.0;
        }
        s.push_str("</svg>\n");
        s
    }

    fn draw_legend(&self, s: &mut String, frame: &Frame) {
        for (row, items) in frame.legend_rows.iter().enumerate() {
            let y = frame.legend_top + row as f64 * 18.0;
            for &(x, i) in items {
                let (name, swatch) = &self.legend[i];
                let swatch = match swatch {
                    Swatch::Line(color, stroke) => format!(
                        "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2.5\"{}/>",
                        x + 20.0,
                        stroke.dash()
                    ),
                    Swatch::Area(color) => format!(
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"20\" height=\"10\" fill=\"{color}\" fill-opacity=\"0.3\"/>",
                        y - 5.0
                    ),
                    Swatch::Dot { color, filled } => format!(
                        "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{}\" stroke=\"{color}\" stroke-width=\"1.8\"/>",
                        x + 10.0,
                        if *filled { color.to_string() } else { "#fff".into() }
                    ),
                    Swatch::Ring => format!(
                        "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"7\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"2\"/>",
                        x + 10.0
                    ),
                };
                let _ = writeln!(
                    s,
                    "{swatch}<text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\" fill=\"{INK}\">{}</text>",
                    x + 26.0,
                    y + 4.0,
                    escape(name)
                );
            }
        }
    }

    fn draw_axes(&self, s: &mut String, frame: &Frame) {
        let p = frame.plot;
        let (bottom, right) = (p.y + p.h, p.x + p.w);
        for (v, label) in &self.y.ticks {
            let (_, y) = self.px(&p, (self.x.lo, *v));
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/><text class=\"tick-y\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">{}</text>",
                p.x,
                p.x - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        for (v, label) in &self.x.ticks {
            let (x, _) = self.px(&p, (*v, self.y.lo));
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#e3e3e3\"/><text class=\"tick-x\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
                p.y,
                bottom + 15.0,
                escape(label)
            );
        }
        let _ = writeln!(
            s,
            "<path d=\"M{:.1},{:.1}V{bottom:.1}H{right:.1}\" fill=\"none\" stroke=\"#555\"/>",
            p.x, p.y
        );
        let _ = writeln!(
            s,
            "<text class=\"axis-x\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            p.x + p.w / 2.0,
            bottom + 33.0,
            escape(&self.x.title)
        );
        let (cx, cy) = (12.0, p.y + p.h / 2.0);
        let _ = writeln!(
            s,
            "<text class=\"axis-y\" x=\"{cx}\" y=\"{cy:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {cx} {cy:.1})\" fill=\"#333\">{}</text>",
            escape(&self.y.title)
        );
    }

    fn polyline(&self, plot: &Rect, points: &[(f64, f64)]) -> String {
        let mut out = String::new();
        for &point in points {
            let (x, y) = self.px(plot, point);
            let _ = write!(out, "{x:.1},{y:.1} ");
        }
        out.trim_end().to_string()
    }

    fn draw_mark(&self, s: &mut String, plot: &Rect, mark: &Mark) {
        match mark {
            Mark::Line {
                points,
                color,
                stroke,
                width,
            } => {
                for run in points.split(|(x, y)| !x.is_finite() || !y.is_finite()) {
                    if run.is_empty() {
                        continue;
                    }
                    let _ = writeln!(
                        s,
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" stroke-linejoin=\"round\"{}/>",
                        self.polyline(plot, run),
                        stroke.dash()
                    );
                }
            }
            Mark::Area {
                lower,
                upper,
                color,
            } => {
                let mut edge = upper.clone();
                edge.extend(lower.iter().rev());
                let _ = writeln!(
                    s,
                    "<polygon points=\"{}\" fill=\"{color}\" fill-opacity=\"0.14\" stroke=\"none\"/>",
                    self.polyline(plot, &edge)
                );
            }
            Mark::Bar { x0, x1, y, color } => {
                let (a, top) = self.px(plot, (*x0, *y));
                let (b, base) = self.px(plot, (*x1, self.y.lo));
                let w = (b - a - 1.0).max(0.5);
                let _ = writeln!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.35\"/>",
                    a + 0.5,
                    (base - top).max(0.0)
                );
            }
            Mark::HLine { y, color, .. } => {
                let (_, py) = self.px(plot, (self.x.lo, *y));
                let _ = writeln!(
                    s,
                    "<line class=\"ref\" x1=\"{:.1}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"7 4\"/>",
                    plot.x,
                    plot.x + plot.w
                );
            }
            Mark::VLine { x, color, .. } => {
                let (px, _) = self.px(plot, (*x, self.y.lo));
                let _ = writeln!(
                    s,
                    "<line class=\"ref\" x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"7 4\"/>",
                    plot.y,
                    plot.y + plot.h
                );
            }
        }
    }
}

/// Per-bucket values as a step line (flat over each bucket); a bucket
/// with no value (NaN) is a gap.
pub fn steps(buckets: impl IntoIterator<Item = (f64, f64, f64)>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (start, width, value) in buckets {
        if value.is_finite() {
            out.push((start, value));
            out.push((start + width, value));
        } else {
            out.push((start, f64::NAN));
        }
    }
    out
}

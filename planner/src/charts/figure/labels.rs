//! Where texts go: a reference line's label on its line, a marker's label
//! next to its point where it overlaps no other label or point.

use super::{Color, Figure, Frame, Mark, CHAR_W, INK, LINE_H};

/// A box on the chart, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    fn inside(&self, o: &Rect) -> bool {
        self.x >= o.x
            && self.y >= o.y
            && self.x + self.w <= o.x + o.w
            && self.y + self.h <= o.y + o.h
    }
}

/// A text placed on the chart: its box, anchor point and alignment.
#[derive(Debug, Clone)]
pub struct Placed {
    pub text: String,
    pub bounds: Rect,
    pub(super) at: (f64, f64),
    pub(super) anchor: &'static str,
    pub(super) color: Color,
    /// "label" (a point's) or "ref" (a reference line's).
    pub class: &'static str,
}

pub(super) fn text_w(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_W
}

/// Text placed with its anchor at `at`.
pub(super) fn placed(
    text: &str,
    at: (f64, f64),
    anchor: &'static str,
    color: Color,
    class: &'static str,
) -> Placed {
    let w = text_w(text);
    let x = match anchor {
        "end" => at.0 - w,
        "middle" => at.0 - w / 2.0,
        _ => at.0,
    };
    Placed {
        text: text.into(),
        bounds: Rect {
            x,
            y: at.1 - LINE_H + 3.0,
            w,
            h: LINE_H,
        },
        at,
        anchor,
        color,
        class,
    }
}

impl Figure {
    /// The labels of reference lines and markers, placed: a marker's label
    /// goes right, left, above or below it (then further off), at the first
    /// place inside the plot that overlaps no other label or point; one
    /// that fits nowhere is left out.
    pub fn labels(&self) -> Vec<Placed> {
        let frame = self.frame();
        self.place(&frame)
    }

    pub(super) fn place(&self, frame: &Frame) -> Vec<Placed> {
        let plot = frame.plot;
        let mut out: Vec<Placed> = Vec::new();
        let mut taken: Vec<Rect> = self
            .markers
            .iter()
            .map(|m| {
                let (x, y) = self.px(&plot, m.at);
                let r = if m.ring { 9.0 } else { 5.0 };
                Rect {
                    x: x - r,
                    y: y - r,
                    w: 2.0 * r,
                    h: 2.0 * r,
                }
            })
            .collect();
        let mut vlines = 0.0;
        for mark in &self.marks {
            let label = match mark {
                Mark::HLine { y, color, label } => {
                    let (_, py) = self.px(&plot, (self.x.lo, *y));
                    placed(
                        label,
                        (plot.x + plot.w - 4.0, py - 5.0),
                        "end",
                        *color,
                        "ref",
                    )
                }
                Mark::VLine { x, color, label } => {
                    let (px, _) = self.px(&plot, (*x, self.y.lo));
                    // At the foot: a distribution rises to the top, where its lines are.
                    let y = plot.y + plot.h - 6.0 - vlines * 15.0;
                    vlines += 1.0;
                    if px + 4.0 + text_w(label) <= plot.x + plot.w {
                        placed(label, (px + 4.0, y), "start", *color, "ref")
                    } else {
                        placed(label, (px - 4.0, y), "end", *color, "ref")
                    }
                }
                _ => continue,
            };
            taken.push(label.bounds);
            out.push(label);
        }
        for m in &self.markers {
            if m.label.is_empty() {
                continue;
            }
            let (x, y) = self.px(&plot, m.at);
            let gap = if m.ring { 12.0 } else { 8.0 };
            let mut candidates = vec![
                ((x + gap, y + 4.0), "start"),
                ((x - gap, y + 4.0), "end"),
                ((x, y - gap - 2.0), "middle"),
                ((x, y + gap + 10.0), "middle"),
            ];
            for step in 1..=4 {
                let dy = f64::from(step) * 14.0;
                for sign in [-1.0, 1.0] {
                    candidates.push(((x + gap, y + 4.0 + sign * dy), "start"));
                    candidates.push(((x - gap, y + 4.0 + sign * dy), "end"));
                }
            }
            let color = if m.filled { INK } else { m.color };
            let fits = candidates.into_iter().find_map(|(at, anchor)| {
                let label = placed(&m.label, at, anchor, color, "label");
                let free =
                    label.bounds.inside(&plot) && !taken.iter().any(|t| t.overlaps(&label.bounds));
                free.then_some(label)
            });
            if let Some(label) = fits {
                taken.push(label.bounds);
                out.push(label);
            }
        }
        out
    }
}

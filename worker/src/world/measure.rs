//! What a video of one object shows, measured from its pixels alone: how
//! `genfleet model eval` checks that a generated video follows its prompt.
//!
//! - background: the median colour of the frames' borders, nearest palette
//!   background;
//! - object mask: pixels far from the background colour;
//! - object colour: the mean colour of the mask's core, nearest palette
//!   colour;
//! - shape: how much of its bounding box the mask fills (square about 1,
//!   circle about pi/4, triangle about 1/2);
//! - motion: the mask's centroid track and area (growth, a straight run
//!   and its direction, a vertical hop, a loop, or nothing).

use super::scene::{Background, Colour, Motion, Shape, Size};

/// A pixel belongs to the object this far (RGB distance) from the background.
const MASK_DISTANCE: f32 = 60.0;
/// Its colour is read where it is this far: edges blend with the background.
const CORE_DISTANCE: f32 = 110.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub background: Background,
    /// None where no object was seen.
    pub colour: Option<Colour>,
    pub shape: Option<Shape>,
    pub size: Option<Size>,
    pub motion: Option<Motion>,
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

fn nearest<T: Copy>(rgb: [f32; 3], options: &[T], colour_of: impl Fn(T) -> [f32; 3]) -> T {
    let mut best = options[0];
    for &o in options {
        if distance(rgb, colour_of(o)) < distance(rgb, colour_of(best)) {
            best = o;
        }
    }
    best
}

fn pixel(frame: &[u8], i: usize) -> [f32; 3] {
    [frame[3 * i], frame[3 * i + 1], frame[3 * i + 2]].map(f32::from)
}

/// Per frame: the object's centroid (x, y) and area as shares of the
/// frame, and its bounding box fill ratio; None where it is not seen.
struct Track {
    centroid: (f32, f32),
    area: f32,
    fill: f32,
    half_width: f32,
}

fn median(mut values: Vec<f32>) -> f32 {
    values.sort_by(f32::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Measures `frames` of `size` x `size` RGB bytes.
pub fn measure(frames: &[Vec<u8>], size: usize) -> Measured {
    let border: Vec<usize> = (0..size * size)
        .filter(|i| {
            let (row, col) = (i / size, i % size);
            row < 2 || col < 2 || row >= size - 2 || col >= size - 2
        })
        .collect();
    let mut channels = [Vec::new(), Vec::new(), Vec::new()];
    for frame in frames {
        for &i in &border {
            let p = pixel(frame, i);
            for k in 0..3 {
                channels[k].push(p[k]);
            }
        }
    }
    let bg_rgb = channels.map(median);
    let background = nearest(bg_rgb, &Background::ALL, Background::rgb);

    let mut core = [0.0f64; 3];
    let mut core_count = 0usize;
    let mut tracks = Vec::with_capacity(frames.len());
    for frame in frames {
        let (mut n, mut sx, mut sy) = (0usize, 0.0f32, 0.0f32);
        let (mut x0, mut x1, mut y0, mut y1) = (size, 0, size, 0);
        for i in 0..size * size {
            let p = pixel(frame, i);
            let d = distance(p, bg_rgb);
            if d < MASK_DISTANCE {
                continue;
            }
            let (row, col) = (i / size, i % size);
            n += 1;
            sx += col as f32;
            sy += row as f32;
            (x0, x1, y0, y1) = (x0.min(col), x1.max(col), y0.min(row), y1.max(row));
            if d >= CORE_DISTANCE {
                for k in 0..3 {
                    core[k] += f64::from(p[k]);
                }
                core_count += 1;
            }
        }
        // A few stray pixels are not an object.
        if n < 4 {
            tracks.push(None);
            continue;
        }
        let s = size as f32;
        let box_area = ((x1 - x0 + 1) * (y1 - y0 + 1)) as f32;
        tracks.push(Some(Track {
            centroid: ((sx / n as f32 + 0.5) / s, (sy / n as f32 + 0.5) / s),
            area: n as f32 / (s * s),
            fill: n as f32 / box_area,
            half_width: (x1 - x0 + 1) as f32 / (2.0 * s),
        }));
    }
    let seen: Vec<&Track> = tracks.iter().flatten().collect();
    if seen.is_empty() || core_count == 0 {
        return Measured {
            background,
            colour: None,
            shape: None,
            size: None,
            motion: None,
        };
    }
    let mean = core.map(|c| (c / core_count as f64) as f32);
    let colour = nearest(mean, &Colour::ALL, Colour::rgb);
    let fill = median(seen.iter().map(|t| t.fill).collect());
    let shape = if fill > 0.9 {
        Shape::Square
    } else if fill > 0.64 {
        Shape::Circle
    } else {
        Shape::Triangle
    };
    let half_width = median(seen.iter().map(|t| t.half_width).collect());
    let size = if half_width < 0.13 {
        Size::Small
    } else {
        Size::Large
    };
    Measured {
        background,
        colour: Some(colour),
        shape: Some(shape),
        size: Some(size),
        motion: Some(motion(&seen)),
    }
}

/// The motion a track shows.
fn motion(track: &[&Track]) -> Motion {
    let ends = track.len().min(3);
    let area = |ts: &[&Track]| ts.iter().map(|t| t.area).sum::<f32>() / ts.len() as f32;
    let growth = area(&track[track.len() - ends..]) / area(&track[..ends]).max(1e-6);
    if growth > 1.6 {
        return Motion::Grow;
    }
    if growth < 1.0 / 1.6 {
        return Motion::Shrink;
    }
    let (first, last) = (track[0].centroid, track[track.len() - 1].centroid);
    let net = (last.0 - first.0, last.1 - first.1);
    let path: f32 = track
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0].centroid, w[1].centroid);
            ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
        })
        .sum();
    let range = |axis: fn(&Track) -> f32| {
        let values = track.iter().map(|t| axis(t));
        let (lo, hi) = values.fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        hi - lo
    };
    let (x_range, y_range) = (range(|t| t.centroid.0), range(|t| t.centroid.1));
    if x_range.max(y_range) < 0.04 {
        return Motion::Still;
    }
    let net_length = (net.0 * net.0 + net.1 * net.1).sqrt();
    if net_length > 0.15 && net_length > 0.5 * path {
        return if net.0.abs() >= net.1.abs() {
            if net.0 < 0.0 {
                Motion::Left
            } else {
                Motion::Right
            }
        } else if net.1 < 0.0 {
            Motion::Up
        } else {
            Motion::Down
        };
    }
    if x_range < 0.05 && y_range >= 0.08 {
        Motion::Bounce
    } else {
        Motion::Orbit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use crate::world::{scene, Split};

    #[test]
    fn rendered_scenes_measure_as_what_they_are() {
        let mut rng = SeededRng::new(5);
        let mut wrong = Vec::new();
        for _ in 0..300 {
            let s = scene(Split::HeldOut, &mut rng);
            let m = measure(&s.render(17, 64), 64);
            let o = s.objects[0];
            let truth = Measured {
                background: s.background,
                colour: Some(o.colour),
                shape: Some(o.shape),
                size: Some(o.size),
                motion: Some(o.motion),
            };
            if m != truth {
                wrong.push(format!("{truth:?} measured as {m:?}"));
            }
        }
        // The measurements are what scores models: on the world itself
        // they must be right nearly always.
        assert!(
            wrong.len() <= 3,
            "{} of 300 wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn an_empty_frame_has_a_background_and_no_object() {
        let frames = vec![vec![10u8; 32 * 32 * 3]; 3];
        let m = measure(&frames, 32);
        assert_eq!(m.background, Background::Black);
        assert_eq!(m.colour, None);
        assert_eq!(m.motion, None);
    }
}

//! What a video of the world shows: one or two flat shapes of a colour and
//! a size, moving one way over a plain background.

use crate::rng::SeededRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    White,
    Purple,
    Orange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Background {
    Black,
    Navy,
    Gray,
    Forest,
    Brown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    Small,
    Large,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Motion {
    Left,
    Right,
    Up,
    Down,
    Still,
    Bounce,
    Grow,
    Shrink,
    Orbit,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];
}

impl Colour {
    pub const ALL: [Colour; 7] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::White,
        Colour::Purple,
        Colour::Orange,
    ];

    /// Bright colours, far from every background and from each other.
    pub fn rgb(self) -> [f32; 3] {
        match self {
            Colour::Red => [230.0, 40.0, 40.0],
            Colour::Green => [50.0, 215.0, 70.0],
            Colour::Blue => [60.0, 120.0, 255.0],
            Colour::Yellow => [245.0, 225.0, 50.0],
            Colour::White => [245.0, 245.0, 245.0],
            Colour::Purple => [175.0, 70.0, 230.0],
            Colour::Orange => [250.0, 140.0, 20.0],
        }
    }
}

impl Background {
    pub const ALL: [Background; 5] = [
        Background::Black,
        Background::Navy,
        Background::Gray,
        Background::Forest,
        Background::Brown,
    ];

    /// Dark colours, so that every object stands out.
    pub fn rgb(self) -> [f32; 3] {
        match self {
            Background::Black => [8.0, 8.0, 8.0],
            Background::Navy => [15.0, 25.0, 85.0],
            Background::Gray => [95.0, 95.0, 95.0],
            Background::Forest => [20.0, 75.0, 30.0],
            Background::Brown => [90.0, 50.0, 20.0],
        }
    }
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    /// Half the object's width, as a share of the frame's width.
    pub fn radius(self) -> f32 {
        match self {
            Size::Small => 0.10,
            Size::Large => 0.17,
        }
    }
}

impl Motion {
    pub const ALL: [Motion; 9] = [
        Motion::Left,
        Motion::Right,
        Motion::Up,
        Motion::Down,
        Motion::Still,
        Motion::Bounce,
        Motion::Grow,
        Motion::Shrink,
        Motion::Orbit,
    ];
}

/// One object of a scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub motion: Motion,
    /// Where its path starts or centres, as shares of the frame (0..1).
    pub anchor: (f32, f32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub background: Background,
    /// One or two objects; the first is the one captions lead with.
    pub objects: Vec<Object>,
}

/// How far a moving object travels over a clip, as a share of the frame.
pub const TRAVEL: f32 = 0.45;

/// How far an object may start from where its motion usually starts, along
/// each axis, as a share of the frame. Small, so that the caption says
/// nearly all there is to say about where the object is: what the model
/// cannot learn from the caption it has to leave to the noise.
pub const JITTER: f32 = 0.08;

impl Object {
    /// A random object with these attributes, starting near its motion's
    /// usual place (moving objects cross the middle of the frame, the rest
    /// keep to its centre); its whole path stays inside the frame.
    pub fn placed(
        shape: Shape,
        colour: Colour,
        size: Size,
        motion: Motion,
        rng: &mut SeededRng,
    ) -> Self {
        let mut near = |centre: f32| centre + JITTER * (2.0 * rng.uniform() as f32 - 1.0);
        let half = TRAVEL / 2.0;
        let anchor = match motion {
            Motion::Left => (near(0.5 + half), near(0.5)),
            Motion::Right => (near(0.5 - half), near(0.5)),
            Motion::Up => (near(0.5), near(0.5 + half)),
            Motion::Down => (near(0.5), near(0.5 - half)),
            // The floor it hops from, below the middle.
            Motion::Bounce => (near(0.5), near(0.65)),
            Motion::Orbit | Motion::Grow | Motion::Shrink | Motion::Still => (near(0.5), near(0.5)),
        };
        Self {
            shape,
            colour,
            size,
            motion,
            anchor,
        }
    }

    /// Centre (x, y) and radius at time `t` in 0..=1, as shares of the frame.
    pub fn at(&self, t: f32) -> (f32, f32, f32) {
        let (x, y) = self.anchor;
        let r = self.size.radius();
        match self.motion {
            Motion::Left => (x - TRAVEL * t, y, r),
            Motion::Right => (x + TRAVEL * t, y, r),
            Motion::Up => (x, y - TRAVEL * t, r),
            Motion::Down => (x, y + TRAVEL * t, r),
            Motion::Still => (x, y, r),
            // Two hops up from the floor at the anchor and back.
            Motion::Bounce => {
                let hop = (2.0 * std::f32::consts::PI * t).sin().abs();
                (x, y - 0.2 * hop, r)
            }
            Motion::Grow => (x, y, r * (0.5 + 1.0 * t)),
            Motion::Shrink => (x, y, r * (1.5 - 1.0 * t)),
            Motion::Orbit => {
                let a = 2.0 * std::f32::consts::PI * t;
                (x + 0.18 * a.cos(), y + 0.18 * a.sin(), r)
            }
        }
    }

    /// How much of the pixel around (px, py) it covers, 0..1, at time `t`
    /// (shares of the frame; `pixel` is the width of one pixel).
    fn coverage(&self, px: f32, py: f32, pixel: f32, t: f32) -> f32 {
        // 4 x 4 samples per pixel: edges are smooth, as a camera sees them.
        const N: usize = 4;
        let (cx, cy, r) = self.at(t);
        // Every shape lies within 1.5 r of its centre.
        let reach = 1.5 * r + pixel;
        if (px - cx).powi(2) + (py - cy).powi(2) > reach * reach {
            return 0.0;
        }
        let mut hits = 0;
        for i in 0..N {
            for j in 0..N {
                let x = px + pixel * ((i as f32 + 0.5) / N as f32 - 0.5) - cx;
                let y = py + pixel * ((j as f32 + 0.5) / N as f32 - 0.5) - cy;
                if inside(self.shape, x, y, r) {
                    hits += 1;
                }
            }
        }
        hits as f32 / (N * N) as f32
    }
}

/// Whether (x, y), relative to the centre, is inside `shape` of radius `r`.
fn inside(shape: Shape, x: f32, y: f32, r: f32) -> bool {
    match shape {
        Shape::Circle => x * x + y * y <= r * r,
        Shape::Square => x.abs() <= r * 0.9 && y.abs() <= r * 0.9,
        // Pointing up: the base at y = r, the apex at y = -r.
        Shape::Triangle => {
            let depth = (y + r) / (2.0 * r);
            (-r..=r).contains(&y) && x.abs() <= depth * r
        }
    }
}

impl Scene {
    /// Renders `frames` frames of `size` x `size` RGB bytes.
    pub fn render(&self, frames: usize, size: usize) -> Vec<Vec<u8>> {
        let pixel = 1.0 / size as f32;
        let bg = self.background.rgb();
        (0..frames)
            .map(|f| {
                let t = if frames > 1 {
                    f as f32 / (frames - 1) as f32
                } else {
                    0.0
                };
                let mut frame = Vec::with_capacity(size * size * 3);
                for row in 0..size {
                    for col in 0..size {
                        let (px, py) = ((col as f32 + 0.5) * pixel, (row as f32 + 0.5) * pixel);
                        let mut rgb = bg;
                        for object in &self.objects {
                            let a = object.coverage(px, py, pixel, t);
                            if a > 0.0 {
                                let c = object.colour.rgb();
                                for k in 0..3 {
                                    rgb[k] = rgb[k] * (1.0 - a) + c[k] * a;
                                }
                            }
                        }
                        frame.extend(rgb.map(|v| v.round().clamp(0.0, 255.0) as u8));
                    }
                }
                frame
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_stays_inside_the_frame() {
        let mut rng = SeededRng::new(3);
        for _ in 0..200 {
            for motion in Motion::ALL {
                for size in Size::ALL {
                    let o = Object::placed(Shape::Circle, Colour::Red, size, motion, &mut rng);
                    for i in 0..=16 {
                        let (x, y, r) = o.at(i as f32 / 16.0);
                        assert!(
                            x - r >= 0.0 && x + r <= 1.0 && y - r >= 0.0 && y + r <= 1.0,
                            "{motion:?} {size:?} leaves the frame at step {i}: {x} {y} {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_frame_shows_the_background_and_the_object_in_their_colours() {
        let scene = Scene {
            background: Background::Navy,
            objects: vec![Object {
                shape: Shape::Square,
                colour: Colour::Yellow,
                size: Size::Large,
                motion: Motion::Still,
                anchor: (0.5, 0.5),
            }],
        };
        let frames = scene.render(2, 32);
        assert_eq!(frames.len(), 2);
        let px = |x: usize, y: usize| frames[0][(y * 32 + x) * 3..(y * 32 + x) * 3 + 3].to_vec();
        assert_eq!(px(0, 0), [15, 25, 85]);
        assert_eq!(px(16, 16), [245, 225, 50]);
        assert_eq!(frames[0], frames[1], "a still object does not move");
    }
}

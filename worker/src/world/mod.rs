//! A procedural video world to learn from, generated on the fly: flat
//! shapes of a few colours and sizes moving over plain backgrounds, each
//! clip with captions from a grammar. Nothing is downloaded; a seed makes
//! every clip again.
//!
//! Some (colour, shape, motion) combinations never appear in training
//! ([`held_out`]): evaluation asks for those, so a model that passes has
//! learned the attributes, not memorised the clips.

pub mod captions;
pub mod measure;
pub mod scene;

pub use captions::{caption, vocabulary};
pub use scene::{Background, Colour, Motion, Object, Scene, Shape, Size};

use crate::rng::SeededRng;

/// Which clips to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Combinations seen in training (one or two objects).
    Train,
    /// One object whose (colour, shape, motion) training never shows.
    HeldOut,
}

/// Whether training never shows `colour` on a `shape` moving as `motion`:
/// about one combination in seven, spread so that every colour, shape and
/// motion is still seen in others.
pub fn held_out(colour: Colour, shape: Shape, motion: Motion) -> bool {
    let (c, s, m) = (colour as usize, shape as usize, motion as usize);
    (3 * c + 5 * s + 2 * m) % 7 == 0
}

fn choose<T: Copy>(options: &[T], rng: &mut SeededRng) -> T {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

/// A random object of `split`.
fn object(split: Split, rng: &mut SeededRng) -> Object {
    loop {
        let (colour, shape, motion) = (
            choose(&Colour::ALL, rng),
            choose(&Shape::ALL, rng),
            choose(&Motion::ALL, rng),
        );
        if held_out(colour, shape, motion) == (split == Split::HeldOut) {
            let size = choose(&Size::ALL, rng);
            return Object::placed(shape, colour, size, motion, rng);
        }
    }
}

/// A random scene of `split`. Training scenes have a second object one
/// time in five, of another colour and moving another way (two objects
/// moving alike would lie one over the other).
pub fn scene(split: Split, rng: &mut SeededRng) -> Scene {
    let mut scene = one_object_scene(split, rng);
    let first = scene.objects[0];
    if split == Split::Train && rng.uniform() < 0.2 {
        let second = loop {
            let o = object(split, rng);
            if o.colour != first.colour && o.motion != first.motion {
                break o;
            }
        };
        scene.objects.push(second);
    }
    scene
}

/// A random scene of `split` with one object (what evaluation measures).
pub fn one_object_scene(split: Split, rng: &mut SeededRng) -> Scene {
    let background = choose(&Background::ALL, rng);
    Scene {
        background,
        objects: vec![object(split, rng)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_out_split_is_disjoint_and_every_attribute_is_still_trained() {
        let mut rng = SeededRng::new(11);
        let mut trained = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            for o in scene(Split::Train, &mut rng).objects {
                assert!(!held_out(o.colour, o.shape, o.motion));
                trained.insert((o.colour, o.shape, o.motion));
            }
        }
        for _ in 0..200 {
            let s = scene(Split::HeldOut, &mut rng);
            assert_eq!(s.objects.len(), 1);
            let o = s.objects[0];
            assert!(held_out(o.colour, o.shape, o.motion));
        }
        let combos = Colour::ALL.len() * Shape::ALL.len() * Motion::ALL.len();
        let held = combos - trained.len();
        assert!(
            (combos / 10..combos / 5).contains(&held),
            "{held} of {combos} held out"
        );
        for c in Colour::ALL {
            assert!(trained.iter().any(|t| t.0 == c), "{c:?} never trained");
        }
        for m in Motion::ALL {
            assert!(trained.iter().any(|t| t.2 == m), "{m:?} never trained");
        }
    }
}

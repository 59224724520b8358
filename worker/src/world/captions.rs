//! Captions of scenes, from a small grammar with paraphrases: "a small red
//! circle drifts to the left on a dark blue background", "red ball moving
//! left, navy backdrop". Training sees many wordings of one scene; the
//! model must learn the attributes, not one sentence.

use super::scene::{Background, Colour, Motion, Object, Scene, Shape, Size};
use crate::rng::SeededRng;
use genfleet_proto::vocabulary::WORLD;

fn pick<'a>(options: &[&'a str], rng: &mut SeededRng) -> &'a str {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

// The words come from the one shared table (`genfleet_proto::vocabulary`),
// which the scheduler checks prompts against: one entry per value, in
// each enum's order (a test below checks the counts).

fn shape_words(shape: Shape) -> &'static [&'static str] {
    WORLD.shapes[shape as usize]
}

fn colour_words(colour: Colour) -> &'static [&'static str] {
    WORLD.colours[colour as usize]
}

fn background_words(background: Background) -> &'static [&'static str] {
    WORLD.backgrounds[background as usize]
}

fn size_words(size: Size) -> &'static [&'static str] {
    WORLD.sizes[size as usize]
}

/// The motion as a verb phrase ("drifts to the left") and as a
/// participle phrase ("moving left").
fn motion_words(motion: Motion) -> (&'static [&'static str], &'static [&'static str]) {
    let words = WORLD.motions[motion as usize];
    (words.verbs, words.participles)
}

/// "a small red circle", "red ball": the object's noun phrase, with or
/// without the size and the article.
fn noun_phrase(o: &Object, rng: &mut SeededRng, article: bool) -> String {
    let colour = pick(colour_words(o.colour), rng);
    let shape = pick(shape_words(o.shape), rng);
    let size = pick(size_words(o.size), rng);
    match (article, rng.next_u64() % 3) {
        (true, 0) => format!("a {colour} {shape}"),
        (true, _) => format!("a {size} {colour} {shape}"),
        (false, 0) => format!("{colour} {shape}"),
        (false, _) => format!("{size} {colour} {shape}"),
    }
}

/// One caption of `scene`, its wording chosen by `rng`.
pub fn caption(scene: &Scene, rng: &mut SeededRng) -> String {
    let bg = pick(background_words(scene.background), rng);
    let clause = |o: &Object, rng: &mut SeededRng, form: u64| {
        let (verbs, participles) = motion_words(o.motion);
        if form == 0 {
            format!("{} {}", noun_phrase(o, rng, true), pick(verbs, rng))
        } else {
            format!(
                "{} {}",
                noun_phrase(o, rng, form == 1),
                pick(participles, rng)
            )
        }
    };
    let form = rng.next_u64() % 3;
    let mut subject = clause(&scene.objects[0], rng, form);
    if let Some(second) = scene.objects.get(1) {
        subject = format!("{subject} and {}", clause(second, rng, form));
    }
    match form {
        0 => format!("{subject} on a {bg} background"),
        1 => format!("{subject} against a {bg} background"),
        _ => format!("{subject}, {bg} backdrop"),
    }
}

/// Every word a caption can contain, in a fixed order: the trained text
/// encoder's vocabulary (word `i` is token `2 + i`).
pub fn vocabulary() -> Vec<String> {
    WORLD.words().into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::scene::Object;

    fn scene(motion: Motion, two: bool) -> Scene {
        let object = Object {
            shape: Shape::Circle,
            colour: Colour::Red,
            size: Size::Small,
            motion,
            anchor: (0.5, 0.5),
        };
        let mut objects = vec![object];
        if two {
            objects.push(Object {
                colour: Colour::Blue,
                shape: Shape::Square,
                ..object
            });
        }
        Scene {
            background: Background::Navy,
            objects,
        }
    }

    #[test]
    fn captions_vary_in_wording_and_name_every_attribute() {
        let mut rng = SeededRng::new(1);
        let s = scene(Motion::Left, false);
        let captions: std::collections::BTreeSet<String> =
            (0..200).map(|_| caption(&s, &mut rng)).collect();
        assert!(captions.len() > 20, "only {} wordings", captions.len());
        for c in &captions {
            assert!(c.contains("red") || c.contains("crimson"), "{c}");
            assert!(c.contains("navy") || c.contains("dark blue"), "{c}");
            assert!(c.contains("left"), "{c}");
        }
        let two = caption(&scene(Motion::Up, true), &mut rng);
        assert!(two.contains(" and "), "{two}");
    }

    #[test]
    fn every_caption_word_is_in_the_vocabulary() {
        let vocabulary = vocabulary();
        let mut rng = SeededRng::new(2);
        for motion in Motion::ALL {
            for _ in 0..50 {
                let c = caption(&scene(motion, true), &mut rng);
                for word in c
                    .split(|ch: char| !ch.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    assert!(vocabulary.iter().any(|v| v == word), "{word:?} of {c:?}");
                }
            }
        }
    }

    #[test]
    fn the_shared_tables_have_one_entry_per_value() {
        assert_eq!(WORLD.shapes.len(), Shape::ALL.len());
        assert_eq!(WORLD.colours.len(), Colour::ALL.len());
        assert_eq!(WORLD.backgrounds.len(), Background::ALL.len());
        assert_eq!(WORLD.sizes.len(), Size::ALL.len());
        assert_eq!(WORLD.motions.len(), Motion::ALL.len());
        // Each value's plain word is its name: the index is the value.
        let named = |value: String, word: &str| assert_eq!(value.to_lowercase(), word);
        for v in Shape::ALL {
            named(format!("{v:?}"), shape_words(v)[0]);
        }
        for v in Colour::ALL {
            named(format!("{v:?}"), colour_words(v)[0]);
        }
        for v in Size::ALL {
            named(format!("{v:?}"), size_words(v)[0]);
        }
        for v in Background::ALL
            .into_iter()
            .filter(|v| *v != Background::Forest)
        {
            named(format!("{v:?}"), background_words(v)[0]);
        }
        assert_eq!(background_words(Background::Forest)[0], "dark green");
        assert_eq!(motion_words(Motion::Orbit).0[0], "circles around");
    }

    /// The token ids the shipped `world` weights learned: a change to the
    /// shared table's words or order would have them read other words.
    #[rustfmt::skip]
    const SHIPPED_ORDER: [&str; 89] = [
        "a", "on", "background", "against", "backdrop", "and", "the", "circle", "ball", "disc",
        "dot", "square", "box", "block", "triangle", "wedge", "red", "crimson", "green",
        "lime", "blue", "azure", "yellow", "golden", "white", "purple", "violet", "orange",
        "black", "dark", "navy", "gray", "grey", "forest", "brown", "small", "little", "tiny",
        "large", "big", "drifts", "to", "left", "moves", "slides", "moving", "drifting",
        "going", "right", "rises", "up", "floats", "upward", "rising", "floating", "falls",
        "down", "sinks", "falling", "sinking", "stays", "still", "sits", "rests", "standing",
        "not", "resting", "bounces", "hops", "bouncing", "hopping", "grows", "gets", "bigger",
        "expands", "growing", "getting", "expanding", "shrinks", "smaller", "contracts",
        "shrinking", "circles", "around", "orbits", "in", "circling", "orbiting", "round",
    ];

    #[test]
    fn the_vocabulary_keeps_the_token_order_the_shipped_weights_learned() {
        assert_eq!(vocabulary(), SHIPPED_ORDER);
    }
}

//! Captions of scenes, from a small grammar with paraphrases: "a small red
//! circle drifts to the left on a dark blue background", "red ball moving
//! left, navy backdrop". Training sees many wordings of one scene; the
//! model must learn the attributes, not one sentence.

use super::scene::{Background, Colour, Motion, Object, Scene, Shape, Size};
use crate::rng::SeededRng;

fn pick<'a>(options: &[&'a str], rng: &mut SeededRng) -> &'a str {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

fn shape_words(shape: Shape) -> &'static [&'static str] {
    match shape {
        Shape::Circle => &["circle", "ball", "disc", "dot"],
        Shape::Square => &["square", "box", "block"],
        Shape::Triangle => &["triangle", "wedge"],
    }
}

fn colour_words(colour: Colour) -> &'static [&'static str] {
    match colour {
        Colour::Red => &["red", "crimson"],
        Colour::Green => &["green", "lime"],
        Colour::Blue => &["blue", "azure"],
        Colour::Yellow => &["yellow", "golden"],
        Colour::White => &["white"],
        Colour::Purple => &["purple", "violet"],
        Colour::Orange => &["orange"],
    }
}

fn background_words(background: Background) -> &'static [&'static str] {
    match background {
        Background::Black => &["black", "dark"],
        Background::Navy => &["navy", "dark blue"],
        Background::Gray => &["gray", "grey"],
        Background::Forest => &["dark green", "forest green"],
        Background::Brown => &["brown"],
    }
}

fn size_words(size: Size) -> &'static [&'static str] {
    match size {
        Size::Small => &["small", "little", "tiny"],
        Size::Large => &["large", "big"],
    }
}

/// The motion as a verb phrase ("drifts to the left") and as a
/// participle phrase ("moving left").
fn motion_words(motion: Motion) -> (&'static [&'static str], &'static [&'static str]) {
    match motion {
        Motion::Left => (
            &["drifts to the left", "moves left", "slides left"],
            &["moving left", "drifting left", "going left"],
        ),
        Motion::Right => (
            &["drifts to the right", "moves right", "slides right"],
            &["moving right", "drifting right", "going right"],
        ),
        Motion::Up => (
            &["rises", "moves up", "floats upward"],
            &["moving up", "rising", "floating up"],
        ),
        Motion::Down => (
            &["falls", "moves down", "sinks"],
            &["moving down", "falling", "sinking"],
        ),
        Motion::Still => (
            &["stays still", "sits still", "rests"],
            &["standing still", "not moving", "resting"],
        ),
        Motion::Bounce => (&["bounces", "hops up and down"], &["bouncing", "hopping"]),
        Motion::Grow => (
            &["grows", "gets bigger", "expands"],
            &["growing", "getting bigger", "expanding"],
        ),
        Motion::Shrink => (
            &["shrinks", "gets smaller", "contracts"],
            &["shrinking", "getting smaller"],
        ),
        Motion::Orbit => (
            &["circles around", "orbits", "moves in a circle"],
            &["circling", "orbiting", "going round"],
        ),
    }
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
/// encoder's vocabulary.
pub fn vocabulary() -> Vec<String> {
    let mut words: Vec<&str> = vec!["a", "on", "background", "against", "backdrop", "and", "the"];
    let phrases = Shape::ALL
        .iter()
        .flat_map(|s| shape_words(*s).iter())
        .chain(Colour::ALL.iter().flat_map(|c| colour_words(*c).iter()))
        .chain(
            Background::ALL
                .iter()
                .flat_map(|b| background_words(*b).iter()),
        )
        .chain(Size::ALL.iter().flat_map(|s| size_words(*s).iter()))
        .chain(Motion::ALL.iter().flat_map(|m| {
            let (verbs, participles) = motion_words(*m);
            verbs.iter().chain(participles.iter())
        }));
    for phrase in phrases {
        words.extend(phrase.split(' '));
    }
    let mut seen = std::collections::BTreeSet::new();
    words
        .into_iter()
        .filter(|w| seen.insert(*w))
        .map(String::from)
        .collect()
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
}

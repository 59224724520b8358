//! The words a model trained on a fixed vocabulary knows (the `world`
//! model today), by what they name, so that the scheduler can tell a user
//! at submit which words of a prompt the model cannot read. The worker's
//! caption grammar takes its words from this table, its tokenizer splits
//! prompts with [`prompt_words`], and its trained token ids follow
//! [`Vocabulary::words`]: the scheduler's check and the model's
//! conditioning read one list.
//!
//! # Which words are reported
//!
//! Every word the model's tokenizer turns into its one unknown-word token,
//! except English function words ([`FUNCTION_WORDS`]: articles, pronouns,
//! prepositions, conjunctions, auxiliaries). They name nothing a video
//! shows, and the model passes over them as over any unknown word, so
//! naming them would bury the words that matter. A colour the world has
//! only for objects, written before "background" or "backdrop" ("a blue
//! background"), is reported as the pair: each word is known, the
//! background is not.

use std::collections::BTreeSet;

/// One motion's words: verb phrases ("drifts to the left") and
/// participle phrases ("moving left").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotionWords {
    pub verbs: &'static [&'static str],
    pub participles: &'static [&'static str],
}

/// The words of a model's caption grammar. Each table has one entry per
/// value of its attribute, in the worker's enum order
/// (`genfleet_worker::world::scene`): the phrases for that value, the
/// plain one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vocabulary {
    pub colours: &'static [&'static [&'static str]],
    pub shapes: &'static [&'static [&'static str]],
    pub sizes: &'static [&'static [&'static str]],
    pub backgrounds: &'static [&'static [&'static str]],
    pub motions: &'static [MotionWords],
    /// The caption templates' own words ("... on a navy background").
    pub grammar: &'static [&'static str],
}

/// The procedural world's grammar (`genfleet_worker::world::captions`).
/// Reordering or renaming a word changes the trained model's token ids:
/// the shipped weights would read the wrong words (a worker test pins
/// the order).
pub const WORLD: Vocabulary = Vocabulary {
    colours: &[
        &["red", "crimson"],
        &["green", "lime"],
        &["blue", "azure"],
        &["yellow", "golden"],
        &["white"],
        &["purple", "violet"],
        &["orange"],
    ],
    shapes: &[
        &["circle", "ball", "disc", "dot"],
        &["square", "box", "block"],
        &["triangle", "wedge"],
    ],
    sizes: &[&["small", "little", "tiny"], &["large", "big"]],
    backgrounds: &[
        &["black", "dark"],
        &["navy", "dark blue"],
        &["gray", "grey"],
        &["dark green", "forest green"],
        &["brown"],
    ],
    motions: &[
        MotionWords {
            verbs: &["drifts to the left", "moves left", "slides left"],
            participles: &["moving left", "drifting left", "going left"],
        },
        MotionWords {
            verbs: &["drifts to the right", "moves right", "slides right"],
            participles: &["moving right", "drifting right", "going right"],
        },
        MotionWords {
            verbs: &["rises", "moves up", "floats upward"],
            participles: &["moving up", "rising", "floating up"],
        },
        MotionWords {
            verbs: &["falls", "moves down", "sinks"],
            participles: &["moving down", "falling", "sinking"],
        },
        MotionWords {
            verbs: &["stays still", "sits still", "rests"],
            participles: &["standing still", "not moving", "resting"],
        },
        MotionWords {
            verbs: &["bounces", "hops up and down"],
            participles: &["bouncing", "hopping"],
        },
        MotionWords {
            verbs: &["grows", "gets bigger", "expands"],
            participles: &["growing", "getting bigger", "expanding"],
        },
        MotionWords {
            verbs: &["shrinks", "gets smaller", "contracts"],
            participles: &["shrinking", "getting smaller"],
        },
        MotionWords {
            verbs: &["circles around", "orbits", "moves in a circle"],
            participles: &["circling", "orbiting", "going round"],
        },
    ],
    grammar: &["a", "on", "background", "against", "backdrop", "and", "the"],
};

/// Words that name nothing a video could show: never reported as unknown.
/// Closed-class English words only; an adverb such as "slowly" is content
/// (the model cannot make it) and is reported.
pub const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "above", "across", "after", "against", "along", "am", "an", "and", "any", "are",
    "around", "as", "at", "be", "been", "behind", "being", "below", "beneath", "beside", "between",
    "but", "by", "can", "could", "did", "do", "does", "each", "every", "for", "from", "had", "has",
    "have", "he", "her", "his", "i", "in", "into", "is", "it", "its", "itself", "me", "my", "near",
    "of", "off", "on", "onto", "or", "our", "over", "she", "so", "some", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "toward",
    "towards", "under", "upon", "very", "was", "we", "were", "which", "while", "who", "will",
    "with", "within", "would", "you", "your",
];

/// The vocabulary of `model`; `None` for a model that hashes every word
/// (the seeded presets): any word reaches it, none is unknown.
pub fn vocabulary(model: &str) -> Option<&'static Vocabulary> {
    match model {
        "world" => Some(&WORLD),
        _ => None,
    }
}

/// A prompt's words as a model's tokenizer reads them: runs of letters
/// and digits, lower-cased.
pub fn prompt_words(prompt: &str) -> impl Iterator<Item = String> + '_ {
    prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The words of `phrases` ("dark blue": "dark", "blue").
fn words_of<'a>(phrases: &'a [&'static str]) -> impl Iterator<Item = &'static str> + 'a {
    phrases.iter().copied().flat_map(|p| p.split(' '))
}

/// Pushes `entry` unless `list` has it (lists keep prompt order).
fn push_once(list: &mut Vec<String>, entry: String) {
    if !list.contains(&entry) {
        list.push(entry);
    }
}

impl Vocabulary {
    /// Every word once, in token order: word `i` is token `2 + i` of a
    /// model trained on this vocabulary.
    pub fn words(&self) -> Vec<&'static str> {
        let phrases = self
            .shapes
            .iter()
            .chain(self.colours)
            .chain(self.backgrounds)
            .chain(self.sizes)
            .flat_map(|values| values.iter().copied())
            .chain(
                self.motions
                    .iter()
                    .flat_map(|m| m.verbs.iter().chain(m.participles).copied()),
            );
        let mut seen = BTreeSet::new();
        self.grammar
            .iter()
            .copied()
            .chain(phrases.flat_map(|p| p.split(' ')))
            .filter(|w| seen.insert(*w))
            .collect()
    }

    /// Each attribute's name and its values' phrases (a motion's verbs,
    /// then its participles), as a user reads them.
    pub fn attributes(&self) -> [(&'static str, Vec<Vec<&'static str>>); 5] {
        let table = |t: &[&'static [&'static str]]| -> Vec<Vec<&'static str>> {
            t.iter().map(|v| v.to_vec()).collect()
        };
        let motions = self
            .motions
            .iter()
            .map(|m| m.verbs.iter().chain(m.participles).copied().collect())
            .collect();
        [
            ("colours", table(self.colours)),
            ("shapes", table(self.shapes)),
            ("sizes", table(self.sizes)),
            ("motions", motions),
            ("backgrounds", table(self.backgrounds)),
        ]
    }

    /// The plain phrase of every value, for a note: "colours red, green,
    /// ...; shapes circle, ...; ...; backgrounds black, navy, ...".
    pub fn summary(&self) -> String {
        self.attributes()
            .iter()
            .map(|(name, values)| {
                let plain: Vec<&str> = values.iter().filter_map(|v| v.first().copied()).collect();
                format!("{name} {}", plain.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The words that name something the world shows: the attributes'
    /// words, less function words.
    fn attribute_words(&self) -> BTreeSet<&'static str> {
        let values = self
            .colours
            .iter()
            .chain(self.shapes)
            .chain(self.sizes)
            .chain(self.backgrounds)
            .flat_map(|v| words_of(v));
        let motions = self
            .motions
            .iter()
            .flat_map(|m| words_of(m.verbs).chain(words_of(m.participles)));
        values
            .chain(motions)
            .filter(|w| !FUNCTION_WORDS.contains(w))
            .collect()
    }

    /// Whether `before` (one or two words) ending right before
    /// "background" names a background of the world.
    fn is_background(&self, before: &[String]) -> bool {
        let one = before.last().map(String::as_str);
        let two = (before.len() == 2).then(|| before.join(" "));
        self.backgrounds
            .iter()
            .flat_map(|v| v.iter())
            .any(|p| Some(*p) == one || Some(*p) == two.as_deref())
    }

    /// What this vocabulary makes of `prompt`'s words.
    pub fn check(&self, prompt: &str) -> WordCheck {
        let known: BTreeSet<&str> = self.words().into_iter().collect();
        let attributes = self.attribute_words();
        let colours: BTreeSet<&str> = self.colours.iter().flat_map(|v| words_of(v)).collect();
        let words: Vec<String> = prompt_words(prompt).collect();
        let mut check = WordCheck::default();
        for (i, word) in words.iter().enumerate() {
            let w = word.as_str();
            if attributes.contains(w) {
                push_once(&mut check.known, word.clone());
            } else if !known.contains(w) && !FUNCTION_WORDS.contains(&w) {
                push_once(&mut check.unknown, word.clone());
            }
            // "a blue background": a known colour, no background of the world.
            if (w == "background" || w == "backdrop") && i > 0 {
                let before = &words[i.saturating_sub(2)..i];
                let colour = &words[i - 1];
                if colours.contains(colour.as_str()) && !self.is_background(before) {
                    push_once(&mut check.unknown, format!("{colour} {w}"));
                }
            }
        }
        check
    }
}

/// What a model with a vocabulary makes of a prompt's words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordCheck {
    /// Content words it does not know, and colour-background pairs it has
    /// no background for, each once, in prompt order.
    pub unknown: Vec<String>,
    /// Words that name a colour, shape, size, motion or background it
    /// knows, each once, in prompt order. Empty: the prompt names nothing
    /// the model can show.
    pub known: Vec<String>,
}

/// What `model` makes of `prompt`; `None` for a model without a fixed
/// vocabulary.
pub fn check(model: &str, prompt: &str) -> Option<WordCheck> {
    vocabulary(model).map(|v| v.check(prompt))
}

/// The content words of `prompt` that `model` does not know (see the
/// module doc); `None` for a model without a fixed vocabulary.
pub fn unknown_words(model: &str, prompt: &str) -> Option<Vec<String>> {
    check(model, prompt).map(|c| c.unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(prompt: &str) -> Vec<String> {
        unknown_words("world", prompt).expect("world has a vocabulary")
    }

    #[test]
    fn words_the_world_does_not_know_are_named_once_in_prompt_order() {
        assert_eq!(
            unknown("a cyan hexagon spinning on a pink background"),
            ["cyan", "hexagon", "spinning", "pink"]
        );
        assert_eq!(
            unknown("A Pink circle, PINK square; 3 of them"),
            ["pink", "3"]
        );
    }

    #[test]
    fn a_caption_of_the_world_has_no_unknown_word() {
        for prompt in [
            "a big yellow square drifts to the right on a gray background",
            "red ball moving left, navy backdrop",
            "a small violet wedge hops up and down against a dark green background",
            "big golden box moving left, gray backdrop",
            "a tiny disc moves in a circle on a dark blue background",
        ] {
            assert_eq!(unknown(prompt), Vec::<String>::new(), "{prompt}");
        }
    }

    #[test]
    fn function_words_are_not_reported() {
        assert_eq!(
            unknown("it is a red circle that rises over the gray background"),
            Vec::<String>::new()
        );
        assert_eq!(unknown("a red circle rises slowly"), ["slowly"]);
    }

    #[test]
    fn an_object_colour_as_a_background_is_reported_as_the_pair() {
        assert_eq!(
            unknown("a white ball falls on a blue background"),
            ["blue background"]
        );
        assert_eq!(unknown("red dot, green backdrop"), ["green backdrop"]);
        // The world's own backgrounds, in one word or two.
        assert_eq!(
            unknown("a red dot on a dark blue background"),
            Vec::<String>::new()
        );
        assert_eq!(
            unknown("a red dot on a forest green backdrop"),
            Vec::<String>::new()
        );
        assert_eq!(
            unknown("a red dot on a brown background"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_prompt_that_names_nothing_of_the_world_has_no_known_word() {
        let none = check("world", "a cat playing the piano on a background").expect("world");
        assert_eq!(none.unknown, ["cat", "playing", "piano"]);
        assert!(none.known.is_empty(), "{:?}", none.known);
        let some = check("world", "a cat on a navy background").expect("world");
        assert_eq!(some.known, ["navy"]);
    }

    #[test]
    fn models_without_a_vocabulary_know_every_word() {
        assert_eq!(unknown_words("tiny", "a cyan hexagon"), None);
        assert_eq!(unknown_words("wan2.1-1.3b", "anything"), None);
    }

    #[test]
    fn the_world_vocabulary_is_its_presets_text_vocabulary() {
        // Padding, start and unknown take the other three ids.
        let shape = crate::models::model_shape("world").expect("preset");
        assert_eq!(WORLD.words().len() + 3, shape.text_vocab);
    }

    #[test]
    fn the_summary_names_each_values_plain_word() {
        let summary = WORLD.summary();
        assert!(
            summary.starts_with("colours red, green, blue, yellow"),
            "{summary}"
        );
        assert!(
            summary.ends_with("backgrounds black, navy, gray, dark green, brown"),
            "{summary}"
        );
        assert!(summary.contains("motions drifts to the left, drifts to the right, rises"));
    }
}

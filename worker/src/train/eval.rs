//! `genfleet model eval`: generates a video for each of N held-out captions
//! (combinations training never showed; or, to see how well the model fits
//! what it saw, training's) and measures whether it shows what its caption
//! says (see `world::measure`).

use std::ops::ControlFlow;

use crate::model::{GenerateRequest, ModelError, Pipeline};
use crate::rng::SeededRng;
use crate::world::measure::{measure, Measured};
use crate::world::{self, Split};

/// How a run is asked for.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Held-out combinations (the test), or training's (how well the
    /// model fits what it saw).
    pub split: Split,
    pub captions: usize,
    pub seed: u64,
    pub steps: usize,
    pub guidance: f64,
    pub frames: usize,
    pub size: usize,
}

/// One caption's outcome.
#[derive(Debug, Clone)]
pub struct EvalCase {
    pub caption: String,
    pub expected: Measured,
    pub measured: Measured,
}

/// Share of captions whose video shows each attribute as asked.
#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    pub colour: f64,
    pub background: f64,
    pub motion: f64,
    pub shape: f64,
    pub size: f64,
}

pub fn accuracy(cases: &[EvalCase]) -> Accuracy {
    let share = |right: fn(&EvalCase) -> bool| {
        cases.iter().filter(|c| right(c)).count() as f64 / cases.len().max(1) as f64
    };
    Accuracy {
        colour: share(|c| c.measured.colour == c.expected.colour),
        background: share(|c| c.measured.background == c.expected.background),
        motion: share(|c| c.measured.motion == c.expected.motion),
        shape: share(|c| c.measured.shape == c.expected.shape),
        size: share(|c| c.measured.size == c.expected.size),
    }
}

/// Generates and measures `options.captions` held-out captions; `on_case`
/// hears each as it is scored.
pub fn evaluate(
    pipeline: &Pipeline,
    options: &EvalOptions,
    on_case: &mut dyn FnMut(usize, &EvalCase),
) -> Result<Vec<EvalCase>, ModelError> {
    let mut rng = SeededRng::new(options.seed);
    let mut cases = Vec::with_capacity(options.captions);
    for i in 0..options.captions {
        let scene = world::one_object_scene(options.split, &mut rng);
        let caption = world::caption(&scene, &mut rng);
        let request = GenerateRequest {
            prompt: caption.clone(),
            negative_prompt: String::new(),
            frames: options.frames,
            width: options.size,
            height: options.size,
            steps: options.steps,
            seed: options.seed.wrapping_add(i as u64),
            guidance: options.guidance,
        };
        let video = pipeline
            .generate(&request, &mut |_| ControlFlow::Continue(()))?
            .ok_or_else(|| ModelError::InvalidConfig("the run stopped early".into()))?;
        let object = scene.objects[0];
        let case = EvalCase {
            caption,
            expected: Measured {
                background: scene.background,
                colour: Some(object.colour),
                shape: Some(object.shape),
                size: Some(object.size),
                motion: Some(object.motion),
            },
            measured: measure(&video.frames, options.size),
        };
        on_case(i, &case);
        cases.push(case);
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn every_caption_is_generated_measured_and_counted() {
        let pipeline = Pipeline::seeded(crate::train::PRESET, 1, &Device::Cpu).expect("model");
        let options = EvalOptions {
            split: Split::HeldOut,
            captions: 3,
            seed: 4,
            steps: 2,
            guidance: 2.0,
            frames: 5,
            size: 32,
        };
        let mut heard = Vec::new();
        let cases = evaluate(&pipeline, &options, &mut |i, _| heard.push(i)).expect("eval");
        assert_eq!(heard, vec![0, 1, 2]);
        assert!(cases.iter().all(|c| !c.caption.is_empty()));
        // Against themselves, the expectations score 100%.
        let perfect: Vec<EvalCase> = cases
            .iter()
            .map(|c| EvalCase {
                measured: c.expected.clone(),
                ..c.clone()
            })
            .collect();
        let a = accuracy(&perfect);
        assert_eq!((a.colour, a.background, a.motion), (1.0, 1.0, 1.0));
    }
}

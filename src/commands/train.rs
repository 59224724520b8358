//! `genfleet model train` and `genfleet model eval`: the `world` model,
//! trained on the procedural world and scored on captions it never saw.

use anyhow::Context;
use genfleet_worker::device::compute::ComputeDevice;
use genfleet_worker::model::{self, Pipeline};
use genfleet_worker::train::{self, eval, TrainOptions};
use genfleet_worker::world::Split;

use crate::cli::{EvalSplit, ModelEvalArgs, ModelTrainArgs};

pub async fn train(args: ModelTrainArgs) -> anyhow::Result<()> {
    let options = TrainOptions {
        seed: args.seed,
        autoencoder_steps: args.autoencoder_steps,
        dit_steps: args.dit_steps,
        batch: args.batch as usize,
        size: args.size,
        frames: args.frames as usize,
        ..TrainOptions::default()
    };
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| train::default_work_dir(&args.dir));
    let models = args.dir.clone();
    let total = (options.autoencoder_steps + options.dit_steps) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}, {eta} left]",
        )
        .context("progress bar template")?,
    );
    let report = tokio::task::spawn_blocking({
        let bar = bar.clone();
        move || {
            let mut recent: Vec<f32> = Vec::new();
            train::train(&options, &work, &models, &mut |p| {
                recent.push(p.loss);
                bar.set_position(p.step as u64);
                bar.set_message(format!(
                    "{} loss {:.4}",
                    p.stage,
                    train::mean_tail(&recent, 20)
                ));
                // A line per 100 steps stays in the log, on a terminal
                // above the bar (a hidden bar prints nothing, so println).
                if p.step % 100 == 0 {
                    let line = format!(
                        "step {}/{} {} loss {:.4} ({:.0} s)",
                        p.step,
                        p.total,
                        p.stage,
                        train::mean_tail(&recent, 100),
                        p.seconds
                    );
                    if bar.is_hidden() {
                        say!("{line}");
                    } else {
                        bar.println(line);
                    }
                }
            })
        }
    })
    .await
    .context("training task")??;
    bar.finish_and_clear();
    say!(
        "trained model world ({:.1} M parameters) in {}; final loss {:.4}",
        report.model.parameters as f64 / 1e6,
        report.model.dir.display(),
        report.final_loss
    );
    Ok(())
}

pub async fn eval(args: ModelEvalArgs) -> anyhow::Result<()> {
    let dir = model::weights::model_dir(&args.dir, &args.model);
    let options = eval::EvalOptions {
        split: match args.split {
            EvalSplit::HeldOut => Split::HeldOut,
            EvalSplit::Train => Split::Train,
        },
        captions: args.captions as usize,
        seed: args.seed,
        steps: args.steps as usize,
        guidance: args.guidance,
        frames: 17,
        size: 64,
    };
    let verbose = args.verbose;
    let device = ComputeDevice::parse(&args.device)?.open()?;
    let device_name = args.device.clone();
    let cases = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (_, pipeline) = Pipeline::load(&dir, &device)
            .with_context(|| format!("loading the model onto {device_name}"))?;
        eval::evaluate(&pipeline, &options, &mut |i, case| {
            if verbose {
                say!(
                    "{:>4} {:?}\n     expected {:?}\n     measured {:?}",
                    i + 1,
                    case.caption,
                    case.expected,
                    case.measured
                );
            }
        })
        .map_err(anyhow::Error::from)
    })
    .await
    .context("evaluation task")??;
    let a = eval::accuracy(&cases);
    let which = match args.split {
        EvalSplit::HeldOut => "held-out",
        EvalSplit::Train => "training",
    };
    say!(
        "{} {which} captions of model {}, generated on {}",
        cases.len(),
        args.model,
        args.device
    );
    let rows = [
        ("colour", a.colour),
        ("background", a.background),
        ("motion", a.motion),
        ("shape", a.shape),
        ("size", a.size),
    ];
    for (name, value) in rows {
        say!("  {name:<10} {:>5.1}%", value * 100.0);
    }
    for (name, value) in rows {
        say!("RESULT eval_{name}_accuracy {:.1} %", value * 100.0);
    }
    Ok(())
}

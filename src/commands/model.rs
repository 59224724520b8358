//! `genfleet model init` and `genfleet model list` (`sample` is in sample.rs).

use anyhow::Context;
use genfleet_worker::model;

use crate::cli::ModelCommand;

pub async fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Init(args) => {
            let (dir, preset) = (args.dir.clone(), args.preset.clone());
            let report = tokio::task::spawn_blocking(move || {
                model::init_model(&dir, &preset, args.seed, args.force)
            })
            .await
            .context("model init task")??;
            let verb = if report.created {
                "created"
            } else {
                "kept existing"
            };
            println!(
                "{verb} model {} ({:.1} M parameters) in {}",
                args.preset,
                report.parameters as f64 / 1e6,
                report.dir.display()
            );
        }
        ModelCommand::Sample(args) => super::sample::run(args).await?,
        ModelCommand::List(args) => {
            let names = model::available_models(&args.dir);
            if names.is_empty() {
                println!(
                    "no models in {} (create one with `genfleet model init`)",
                    args.dir.display()
                );
            }
            for name in names {
                let manifest =
                    model::weights::read_manifest(&model::weights::model_dir(&args.dir, &name))?;
                println!(
                    "{name}\t{:.1} M parameters\tseed {}\tdim {} x {} blocks",
                    manifest.parameters as f64 / 1e6,
                    manifest.seed,
                    manifest.config.dim,
                    manifest.config.depth
                );
            }
        }
    }
    Ok(())
}

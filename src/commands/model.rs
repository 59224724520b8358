//! `genfleet model init` and `genfleet model list` (`sample` is in sample.rs).

use anyhow::Context;
use genfleet_worker::model;

use crate::cli::ModelCommand;
use crate::output;

/// A model as `-o json|yaml` prints it: its name and its config.json.
#[derive(serde::Serialize)]
struct ModelItem {
    name: String,
    #[serde(flatten)]
    manifest: model::weights::ModelManifest,
}

pub async fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Init(args) => {
            for preset in args.preset {
                let dir = args.dir.clone();
                let name = preset.clone();
                let report = tokio::task::spawn_blocking(move || {
                    model::init_model(&dir, &name, args.seed, args.force)
                })
                .await
                .context("model init task")??;
                let verb = match (report.created, model::shipped::weights(&preset)) {
                    (false, _) => "kept existing",
                    (true, Some(_)) => "installed the trained",
                    (true, None) => "created",
                };
                say!(
                    "{verb} model {preset} ({:.1} M parameters) in {}",
                    report.parameters as f64 / 1e6,
                    report.dir.display()
                );
            }
        }
        ModelCommand::Sample(args) => super::sample::run(args).await?,
        ModelCommand::Train(args) => super::train::train(args).await?,
        ModelCommand::Eval(args) => super::train::eval(args).await?,
        ModelCommand::List(args) => {
            let mut models = Vec::new();
            for name in model::available_models(&args.dir) {
                let dir = model::weights::model_dir(&args.dir, &name);
                models.push(ModelItem {
                    manifest: model::weights::read_manifest(&dir)?,
                    name,
                });
            }
            output::list(args.output.output, &models, |_| {
                if models.is_empty() {
                    return format!(
                        "no models in {} (create one with `genfleet model init`)",
                        args.dir.display()
                    );
                }
                let lines: Vec<String> = models
                    .iter()
                    .map(|m| {
                        format!(
                            "{}\t{:.1} M parameters\t{} {}\tdim {} x {} blocks",
                            m.name,
                            m.manifest.parameters as f64 / 1e6,
                            if m.manifest.trained {
                                "trained from seed"
                            } else {
                                "seed"
                            },
                            m.manifest.seed,
                            m.manifest.config.dim,
                            m.manifest.config.depth
                        )
                    })
                    .collect();
                lines.join("\n")
            })?;
        }
    }
    Ok(())
}

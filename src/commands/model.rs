//! `genfleet model init` and `genfleet model list` (`sample` is in sample.rs);
//! `model list -o wide` prints the words of a model with a fixed vocabulary.

use std::collections::BTreeMap;

use anyhow::Context;
use genfleet_proto::vocabulary::Vocabulary;
use genfleet_worker::model;

use crate::cli::ModelCommand;
use crate::output;

/// A model as `-o json|yaml` prints it: its name, its config.json and,
/// for a model trained on a fixed vocabulary, its words by attribute.
#[derive(serde::Serialize)]
struct ModelItem {
    name: String,
    #[serde(flatten)]
    manifest: model::weights::ModelManifest,
    #[serde(skip_serializing_if = "Option::is_none")]
    vocabulary: Option<BTreeMap<&'static str, Vec<Vec<&'static str>>>>,
}

/// The words jobs naming model `name` are checked against (the shared
/// table), if the model was made with a fixed vocabulary.
fn vocabulary(name: &str, manifest: &model::weights::ModelManifest) -> Option<&'static Vocabulary> {
    genfleet_proto::vocabulary::vocabulary(name).filter(|_| !manifest.config.words.is_empty())
}

/// `-o wide`'s lines under a model: each attribute's values, a value's
/// other words in brackets ("navy (dark blue)").
fn vocabulary_lines(vocabulary: &Vocabulary) -> Vec<String> {
    vocabulary
        .attributes()
        .iter()
        .map(|(name, values)| {
            let values: Vec<String> = values
                .iter()
                .map(|words| match words.split_first() {
                    Some((plain, [])) => plain.to_string(),
                    Some((plain, others)) => format!("{plain} ({})", others.join(", ")),
                    None => String::new(),
                })
                .collect();
            format!("  {name}: {}", values.join(", "))
        })
        .collect()
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
                let manifest = model::weights::read_manifest(&dir)?;
                models.push(ModelItem {
                    vocabulary: vocabulary(&name, &manifest)
                        .map(|v| v.attributes().into_iter().collect()),
                    manifest,
                    name,
                });
            }
            output::list(args.output.output, &models, |wide| {
                if models.is_empty() {
                    return format!(
                        "no models in {} (create one with `genfleet model init`)",
                        args.dir.display()
                    );
                }
                let lines: Vec<String> = models
                    .iter()
                    .flat_map(|m| {
                        let row = format!(
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
                        );
                        let words = vocabulary(&m.name, &m.manifest)
                            .filter(|_| wide)
                            .map(vocabulary_lines);
                        std::iter::once(row).chain(words.into_iter().flatten())
                    })
                    .collect();
                lines.join("\n")
            })?;
        }
    }
    Ok(())
}

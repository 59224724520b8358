//! `genfleet profile export`: the leader's learned step rates as a profile
//! file that `genfleet plan --profile` reads, so plans use measured speeds.

use anyhow::Context;
use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;

use crate::cli::ProfileCommand;
use crate::client::{first_channel, ClientConfig, ClientError};

pub async fn run(command: ProfileCommand, client: &ClientConfig) -> anyhow::Result<()> {
    match command {
        ProfileCommand::Export(args) => {
            let mut client =
                ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            let reply = client
                .profile(pb::ProfileRequest {})
                .await
                .map_err(ClientError::from)?
                .into_inner();
            let text = render(&reply.rates);
            match &args.out {
                Some(path) => {
                    std::fs::write(path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    say!("{} rates written to {}", reply.rates.len(), path.display());
                }
                None => crate::output::print(&text)?,
            }
            Ok(())
        }
    }
}

/// The rates in the profile file's format (docs/planning.md).
pub fn render(rates: &[pb::ProfileRate]) -> String {
    let mut out = String::from(
        "# Step rates the genfleet leader learned from its workers (seeded ones where\n# it saw none); for `genfleet plan --profile`.\nrates:\n",
    );
    for r in rates {
        // A rate measured on jobs of one size says which.
        let size = match r.pixel_frames {
            0 => String::new(),
            n => format!(", pixel_frames: {n}"),
        };
        out.push_str(&format!(
            "  - {{ model: {}, flavor: {}, tp: {}{size}, steps_per_s: {} }}\n",
            r.model, r.flavor, r.tp, r.steps_per_s
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use genfleet_scheduler::policy::Profile;

    /// What the leader learned per size reads back into a plan's profile
    /// as the same rates.
    #[test]
    fn exported_rates_with_sizes_read_back_as_the_same_rates() {
        let mut learned = Profile::default();
        learned.set("tiny", "cpu", 1, 2.0);
        learned.set_sized("tiny", "cpu", 1, 64 * 64 * 17, 8.0);
        learned.set_sized("tiny", "cpu", 1, 256 * 256 * 17, 0.5);
        let sizeless = learned.rates().map(|(m, f, tp, r)| (m, f, tp, 0, r));
        let rates: Vec<pb::ProfileRate> = sizeless
            .chain(learned.sized_rates())
            .map(
                |(model, flavor, tp, pixel_frames, steps_per_s)| pb::ProfileRate {
                    model: model.into(),
                    flavor: flavor.into(),
                    tp,
                    steps_per_s,
                    pixel_frames,
                },
            )
            .collect();
        let mut read = Profile::default();
        genfleet_planner::profile_file::apply_rates(&mut read, "exported.yaml", &render(&rates))
            .expect("the export reads back");
        for work in [0, 64 * 64 * 17, 128 * 128 * 17, 256 * 256 * 17] {
            assert_eq!(
                read.steps_per_s_at("tiny", "cpu", 1, work),
                learned.steps_per_s_at("tiny", "cpu", 1, work),
                "{work} pixel-frames"
            );
        }
    }
}

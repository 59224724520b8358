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
        out.push_str(&format!(
            "  - {{ model: {}, flavor: {}, tp: {}, steps_per_s: {} }}\n",
            r.model, r.flavor, r.tp, r.steps_per_s
        ));
    }
    out
}

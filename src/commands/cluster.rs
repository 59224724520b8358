//! `genfleet cluster`: status, membership and leadership of the replicas.

use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;

use crate::cli::ClusterCommand;
use crate::client::{channel, first_channel, ClientConfig, ClientError};
use crate::output::{self, Format};

pub async fn run(command: ClusterCommand, client: &ClientConfig) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status(args) => {
            status(client, &args.client.scheduler, args.output.output).await
        }
        ClusterCommand::AddReplica(args) => {
            let mut client =
                ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            let request = pb::AddReplicaRequest {
                id: args.id,
                address: args.address.clone(),
            };
            let reply = client
                .add_replica(request)
                .await
                .map_err(ClientError::from)?
                .into_inner();
            say!(
                "replica {} at {} votes; voters {:?}",
                args.id,
                args.address,
                reply.voters
            );
            Ok(())
        }
        ClusterCommand::RemoveReplica(args) => {
            let mut client =
                ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            let reply = client
                .remove_replica(pb::RemoveReplicaRequest { id: args.id })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            say!("replica {} removed; voters {:?}", args.id, reply.voters);
            Ok(())
        }
        ClusterCommand::TransferLeader(args) => {
            let mut client =
                ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            client
                .transfer_leader(pb::TransferLeaderRequest { id: args.id })
                .await
                .map_err(ClientError::from)?;
            say!("replica {} leads", args.id);
            Ok(())
        }
        ClusterCommand::Snapshot(command) => super::backup::run(command, client).await,
    }
}

/// A replica as `-o json|yaml` prints it: its address and its own status,
/// or why it did not answer.
#[derive(serde::Serialize)]
struct ReplicaItem<'a> {
    id: u64,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a pb::ReplicaStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Asks one replica for the members, then every member for its own view.
async fn status(client: &ClientConfig, addresses: &str, format: Format) -> anyhow::Result<()> {
    let mut first = ClusterServiceClient::new(first_channel(client, addresses).await?);
    let seed = first
        .status(pb::ReplicaStatusRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let mut rows = Vec::new();
    for member in &seed.members {
        let status = match member_status(client, &member.address).await {
            Ok(s) => Ok(s),
            Err(e) => Err(e.to_string()),
        };
        rows.push((member.clone(), status));
    }
    let items: Vec<ReplicaItem> = rows
        .iter()
        .map(|(member, status)| ReplicaItem {
            id: member.id,
            address: &member.address,
            status: status.as_ref().ok(),
            error: status.as_ref().err().map(String::as_str),
        })
        .collect();
    output::list(format, &items, |_| status_table(&seed, &rows))
}

async fn member_status(
    client: &ClientConfig,
    address: &str,
) -> Result<pb::ReplicaStatus, ClientError> {
    let mut client = ClusterServiceClient::new(channel(client, address).await?);
    Ok(client
        .status(pb::ReplicaStatusRequest {})
        .await?
        .into_inner())
}

/// The `genfleet cluster status` table: one row per member.
pub fn status_table(
    seed: &pb::ReplicaStatus,
    rows: &[(pb::Member, Result<pb::ReplicaStatus, String>)],
) -> String {
    let leader_commit = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .find(|s| s.role == "leader")
        .map(|s| s.commit);
    let mut out = vec![format!(
        "{:<4} {:<28} {:<9} {:<7} {:>5} {:>8} {:>8} {:>5}  {}",
        "ID", "ADDRESS", "ROLE", "VOTER", "TERM", "COMMIT", "APPLIED", "LAG", "STATE HASH"
    )];
    for (member, status) in rows {
        let voter = if seed.voters.contains(&member.id) {
            "voter"
        } else if seed.learners.contains(&member.id) {
            "learner"
        } else {
            "-"
        };
        match status {
            Ok(s) => {
                let lag = leader_commit
                    .map_or("-".to_string(), |c| c.saturating_sub(s.applied).to_string());
                out.push(format!(
                    "{:<4} {:<28} {:<9} {:<7} {:>5} {:>8} {:>8} {:>5}  {}",
                    member.id,
                    member.address,
                    s.role,
                    voter,
                    s.term,
                    s.commit,
                    s.applied,
                    lag,
                    &s.state_hash[..s.state_hash.len().min(16)]
                ));
            }
            Err(e) => out.push(format!(
                "{:<4} {:<28} unreachable: {e}",
                member.id, member.address
            )),
        }
    }
    out.join("\n")
}

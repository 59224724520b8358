//! `genfleet cluster snapshot save|restore`: the replicated state to a file
//! and back, as `etcdctl snapshot` does for etcd. The file holds every job,
//! queue, tenant and key hash (never a key's secret) and the nodes: it is
//! written readable by its owner only, and both calls need an admin key.

use std::path::Path;

use anyhow::Context;
use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;
use prost::Message as _;

use crate::cli::SnapshotCommand;
use crate::client::{first_channel, ClientConfig, ClientError};

use genfleet_proto::MAX_BACKUP_BYTES;

pub async fn run(command: SnapshotCommand, client: &ClientConfig) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save(args) => {
            if args.file.exists() {
                anyhow::bail!(
                    "{} exists: give a new file name (a backup never replaces one)",
                    args.file.display()
                );
            }
            let mut cluster =
                ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?)
                    .max_decoding_message_size(MAX_BACKUP_BYTES);
            let reply = cluster
                .save_snapshot(pb::SaveSnapshotRequest {})
                .await
                .map_err(ClientError::from)?
                .into_inner();
            write_backup(&args.file, &reply.encode_to_vec())?;
            say!(
                "saved the state as of raft index {} (state {}) to {}, {} bytes",
                reply.applied_index,
                short(&reply.state_hash),
                args.file.display(),
                reply.state.len()
            );
            Ok(())
        }
        SnapshotCommand::Restore(args) => {
            let bytes = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let saved = pb::SaveSnapshotReply::decode(bytes.as_slice())
                .with_context(|| format!("{} is not a genfleet backup", args.file.display()))?;
            let mut cluster =
                ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?)
                    .max_encoding_message_size(MAX_BACKUP_BYTES);
            let reply = cluster
                .restore_snapshot(pb::RestoreSnapshotRequest { state: saved.state })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            say!(
                "restored {} jobs from {} (saved at raft index {}); {} that were running wait to resume; state {}",
                reply.jobs,
                args.file.display(),
                saved.applied_index,
                reply.requeued,
                short(&reply.state_hash)
            );
            Ok(())
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Writes the backup beside `path`, readable by its owner only, synced,
/// then links it into place: a crash leaves no half-written backup under
/// the name, and a file made there meanwhile is never replaced (a link,
/// unlike a rename, fails on an existing name).
fn write_backup(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    crate::cluster::write_private_bytes(&partial, bytes)
        .with_context(|| format!("writing {}", partial.display()))?;
    let linked = std::fs::hard_link(&partial, path)
        .with_context(|| format!("naming the backup {}", path.display()));
    let _ = std::fs::remove_file(&partial);
    linked?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The new name itself is durable once its directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

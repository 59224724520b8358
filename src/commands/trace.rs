//! `genfleet trace export`: the cluster's own workload (every job it
//! holds, and those retention forgot) in the planner's trace format, so
//! `genfleet plan --trace` replays what the cluster really ran.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;

use crate::cli::{TraceCommand, TraceExportArgs};
use crate::client::{first_channel, ClientConfig, ClientError};

pub async fn run(command: TraceCommand, client: &ClientConfig) -> anyhow::Result<()> {
    match command {
        TraceCommand::Export(args) => export(args, client).await,
    }
}

async fn export(args: TraceExportArgs, client: &ClientConfig) -> anyhow::Result<()> {
    let request = pb::ExportTraceRequest {
        since_ms: args.since.map(epoch_ms).transpose()?,
        until_ms: args.until.map(epoch_ms).transpose()?,
    };
    let mut cluster =
        ClusterServiceClient::new(first_channel(client, &args.client.scheduler).await?);
    let mut stream = cluster
        .export_trace(request)
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let mut records = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(ClientError::from)? {
        records.extend(chunk.records);
    }
    if args.completed_only {
        records.retain(|r| r.outcome() == pb::JobState::Completed);
    }
    if records.is_empty() {
        anyhow::bail!("no job arrived in the range asked for: nothing to export");
    }
    let text = genfleet_planner::workload::export_csv(&records)?;
    match &args.out {
        Some(path) => {
            write_owner_only(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            say!("{} jobs written to {}", records.len(), path.display());
        }
        None => crate::output::print(&text)?,
    }
    Ok(())
}

fn epoch_ms(at: SystemTime) -> anyhow::Result<i64> {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("a time before 1970")?;
    i64::try_from(since_epoch.as_millis()).context("a time too far in the future")
}

/// The trace shows every tenant's workload: readable by its owner only
/// (a file that exists is replaced, keeping its mode).
fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

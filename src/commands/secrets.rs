//! `genfleet secrets`: the cluster secret the replicas prove themselves
//! with, and worker keys derived from it (docs/security.md). Made offline:
//! nothing here needs a running cluster.

use anyhow::Context;
use genfleet_scheduler::auth::cluster_secret::ClusterSecret;
use genfleet_scheduler::auth::NodePattern;

use crate::cli::{SecretsCommand, SecretsInitArgs, WorkerKeyArgs};
use crate::cluster::write_private;

/// File names in a secrets folder, as the Kubernetes Secrets' keys.
pub const CLUSTER_SECRET_FILE: &str = "cluster-secret";
pub const WORKER_KEY_FILE: &str = "worker-key";

pub fn run(command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::Init(args) => init(args),
        SecretsCommand::WorkerKey(args) => worker_key(args),
    }
}

fn init(args: SecretsInitArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    let secret_path = dir.join(CLUSTER_SECRET_FILE);
    let key_path = dir.join(WORKER_KEY_FILE);
    for path in [&secret_path, &key_path] {
        if path.exists() {
            anyhow::bail!(
                "{} exists: keep using it, or remove it to make a new one (every replica and worker then needs the new files)",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = ClusterSecret::generate();
    let secret = ClusterSecret::from_text(&text)?;
    write_private(&secret_path, &text)
        .with_context(|| format!("writing {}", secret_path.display()))?;
    write_private(&key_path, &secret.worker_key(&NodePattern::Any))
        .with_context(|| format!("writing {}", key_path.display()))?;
    say!("in {}:", dir.display());
    say!("  {CLUSTER_SECRET_FILE}   every scheduler replica's --cluster-secret-file (never give it to workers)");
    say!("  {WORKER_KEY_FILE}       every worker's --worker-key-file (it may register any node)");
    say!("a key for some nodes only: genfleet secrets worker-key --cluster-secret-file {} --node 'gpu-*'", secret_path.display());
    Ok(())
}

fn worker_key(args: WorkerKeyArgs) -> anyhow::Result<()> {
    let secret = ClusterSecret::load(&args.cluster_secret_file)?;
    let pattern = NodePattern::parse(&args.node)?;
    say!("{}", secret.worker_key(&pattern));
    Ok(())
}

//! Command-line arguments of the `genfleet` binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::output::OutputArgs;
use clap::{ArgGroup, Args, Parser, Subcommand};
use genfleet_scheduler::spec::{self, parse_size};
use genfleet_worker::device::SimulatedGroup;

pub const DEFAULT_SCHEDULER: &str = "http://127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "genfleet",
    version,
    about = "A Raft-replicated GPU cluster scheduler for video generation"
)]
pub struct Cli {
    /// The API key client commands present (a cluster with an admin key
    /// needs one); default: the file $XDG_CONFIG_HOME/genfleet/api-key.
    #[arg(long, global = true, env = "GENFLEET_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The CA certificate (PEM) that https:// schedulers' certificates must
    /// chain to, e.g. the ca.crt of `genfleet certs init`.
    #[arg(long, global = true, env = "GENFLEET_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scheduler replica.
    Scheduler(SchedulerArgs),
    /// Run a worker that executes jobs on this node's devices.
    Worker(WorkerArgs),
    /// Submit a text-to-video job.
    Submit(SubmitArgs),
    /// List jobs.
    Jobs(JobsArgs),
    /// Show one job.
    Get(JobIdArgs),
    /// Follow a job until it ends.
    Watch(JobIdArgs),
    /// Cancel a job.
    Cancel(JobIdArgs),
    /// Run an embedded local cluster (scheduler and workers in one process) until Ctrl-C.
    Up(UpArgs),
    /// Start a local cluster, generate a few videos, print where they are, exit.
    Demo(DemoArgs),
    /// Create or list model weights.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Operate the scheduler replicas.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage the teams' queues and their quotas.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// List worker nodes; cordon a node so it takes no new work.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage tenants: the teams or customers that submit, and their queues.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Show who the API key in use belongs to.
    Whoami(ListArgs),
    /// Show the GPUs this machine has, as a worker here would see them.
    Devices(DevicesArgs),
    /// Kubernetes helpers: print the GenQueue CRD.
    #[command(subcommand)]
    Kube(KubeCommand),
    /// Make a development CA and certificates for TLS, or issue more from one.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make the cluster secret the replicas prove themselves with, and
    /// worker keys derived from it (docs/security.md).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Check a video file: its H.264 track, every frame decoded.
    #[command(subcommand)]
    Video(VideoCommand),
    /// The throughput profile the leader learned from its workers.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Plan capacity: replay a workload through the scheduling policy on a
    /// described fleet, in simulated time, and report waits, cost and
    /// service-level targets (docs/planning.md).
    Plan(PlanArgs),
    /// The cluster's own workload as a trace for `genfleet plan --trace`.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Print the completion script of a shell (bash, zsh, fish, ...).
    ///
    /// bash: `source <(genfleet completion bash)` (in ~/.bashrc); zsh:
    /// `source <(genfleet completion zsh)` after compinit; fish:
    /// `genfleet completion fish | source`.
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Write every job the cluster holds or forgot (the newest 200,000 of
    /// those) as a CSV trace: arrival, queue, class, size, steps, start,
    /// end, outcome. Needs an admin key.
    Export(TraceExportArgs),
}

#[derive(Debug, Args)]
pub struct TraceExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Write it here (CSV, readable by its owner only); default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only jobs that arrived at or after this: a time (RFC 3339, e.g.
    /// 2026-12-01T00:00:00Z) or how long ago (e.g. 24h).
    #[arg(long, value_parser = parse_when)]
    pub since: Option<std::time::SystemTime>,
    /// Only jobs that arrived before this (as --since).
    #[arg(long, value_parser = parse_when)]
    pub until: Option<std::time::SystemTime>,
    /// Only jobs that completed (not failed, cancelled or unfinished ones).
    #[arg(long)]
    pub completed_only: bool,
}

/// A point in time: RFC 3339, or a duration before now.
fn parse_when(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text} ago is before the clock's start"));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("{text:?} is neither a time (2026-12-01T00:00:00Z) nor a duration ago (24h)")
    })
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Write the leader's step rates as a profile for `genfleet plan --profile`.
    Export(ProfileExportArgs),
}

#[derive(Debug, Args)]
pub struct ProfileExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Write it here (YAML); default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
// One group for the two ways to give the workload, so that the usage line
// and a missing-workload error name both (`<--trace ..|--generate ..>`).
#[command(group(ArgGroup::new("workload").required(true).args(["trace", "generate"])))]
pub struct PlanArgs {
    /// The fleet: pools of nodes of a flavor, with prices (YAML).
    #[arg(long)]
    pub fleet: PathBuf,
    /// The queues, as `genfleet queue apply -f` takes them; without it,
    /// every job goes to the implicit `default` queue.
    #[arg(long)]
    pub queues: Option<PathBuf>,
    /// The workload as a trace: CSV with a header, or JSON lines.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// The workload as a description: rates, daily shape, bursts, size mix
    /// and a seed (YAML).
    #[arg(long)]
    pub generate: Option<PathBuf>,
    /// A service-level target, e.g. `interactive.p95_wait<=30s` or
    /// `research.p50_e2e<=1h` (a class or a queue; p50, p95 or p99; wait
    /// or e2e). Repeat for more.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Rates (steps per second of a model on a flavor at a tp) to plan
    /// with, over the leader's seeded ones (YAML; docs/planning.md).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write everything here: report.json, report.html (one file, charts
    /// inline), queue-depth.svg, utilization.svg, wait-cdf.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Size the fleet: node counts to try for a pool, FLAVOR=MIN..MAX or
    /// FLAVOR=A,B,C; repeat for more pools (every combination is run).
    #[arg(long = "sweep")]
    pub sweeps: Vec<String>,
    /// What-if: run the same workload on this fleet too and compare.
    #[arg(long, conflicts_with = "sweeps")]
    pub compare: Option<PathBuf>,
    /// Stop the simulation here (e.g. 24h); default: when every job ended,
    /// or at twice the arrivals' span (at least an hour after the last
    /// arrival) for a fleet too small to finish.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub horizon: Option<Duration>,
    /// Each node fails this often on average (a Poisson process), for
    /// pools whose fleet entry gives no node_mtbf of its own: its jobs
    /// lose the work since their last periodic checkpoint (the workers'
    /// Young/Daly interval from --checkpoint-time and the MTBF) and are
    /// requeued [default: such nodes never fail].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub node_mtbf: Option<Duration>,
    /// How long a failed node is down (with --node-mtbf).
    #[arg(long, default_value = "4h", value_parser = humantime::parse_duration)]
    pub node_repair: Duration,
    /// Seeds the node failures: the same seed, the same failures.
    #[arg(long, default_value_t = 0)]
    pub failure_seed: u64,
    /// Time a preempted job spends writing its checkpoint.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkpoint_time: Duration,
    /// Time a resumed job spends loading before its first step.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_time: Duration,
    /// The scheduling tick: a cycle runs at the first tick after a change.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub cycle: Duration,
    /// Running work younger than this is never preempted (the leader's --min-runtime).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub min_runtime: Duration,
    /// Simulations to run at once (a sweep's fleets, replications)
    /// [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub jobs: Option<u64>,
    /// Run the plan this many times: other seeds of a --generate workload,
    /// or block bootstrap resamples of a --trace (docs/planning.md). The
    /// report gives each figure a 95% interval and each target "met in K
    /// of N".
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=genfleet_planner::replications::MAX_REPLICATIONS as u64))]
    pub replications: u64,
    /// Write one CSV row per job here (with --replications, a
    /// `replication` column first).
    #[arg(long)]
    pub jobs_out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum VideoCommand {
    /// Read an MP4 back, decode every frame, and check what it should be.
    Check(VideoCheckArgs),
}

#[derive(Debug, Args)]
pub struct VideoCheckArgs {
    /// The MP4 file.
    pub file: PathBuf,
    /// Frames it must have.
    #[arg(long)]
    pub frames: Option<u32>,
    /// Size it must have, WIDTHxHEIGHT.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Frame rate it must have.
    #[arg(long)]
    pub fps: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Print the GenQueue CustomResourceDefinition as YAML (deploy/base/genqueue-crd.yaml).
    Crd,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Where amdgpu's sysfs is (a container may see the host's elsewhere).
    #[arg(long, default_value = "/")]
    pub sysfs_root: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Every node with its devices, what is busy, and whether it is cordoned.
    List(ListArgs),
    /// Give the node no new work; what runs there finishes.
    Cordon(NodeNameArgs),
    /// Give the node work again.
    Uncordon(NodeNameArgs),
}

#[derive(Debug, Args)]
pub struct NodeNameArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The node's name (as its worker registered it).
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create or replace queues from a YAML file (one queue per document).
    Apply(QueueApplyArgs),
    /// Every queue with its cohort, weight and quotas.
    List(ListArgs),
    /// Delete a queue (refused while unfinished jobs name it).
    Delete(QueueNameArgs),
}

#[derive(Debug, Args)]
pub struct QueueApplyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The YAML file, or - for standard input.
    #[arg(short = 'f', long)]
    pub file: String,
}

#[derive(Debug, Args)]
pub struct QueueNameArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The queue's name.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant, or replace the one of that name.
    Apply(TenantApplyArgs),
    /// Every tenant with its queues and limits.
    List(ListArgs),
    /// Delete a tenant (refused while it has keys).
    Delete(TenantNameArgs),
}

#[derive(Debug, Args)]
pub struct TenantApplyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The tenant's name.
    pub name: String,
    /// Queues its jobs may go to, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub queues: Vec<String>,
    /// Where a job that names no queue goes [default: the first queue].
    #[arg(long)]
    pub default_queue: Option<String>,
    /// The class of a job that names none [default: standard].
    #[arg(long)]
    pub default_qos: Option<String>,
    /// The highest class it may ask for [default: interactive].
    #[arg(long)]
    pub max_qos: Option<String>,
    /// Jobs it may have pending or running at once [default: no limit].
    #[arg(long)]
    pub max_unfinished_jobs: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TenantNameArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The tenant's name.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; its secret is printed once and stored nowhere.
    Create(KeyCreateArgs),
    /// Keys by id, role and tenant (never their secrets).
    List(KeyListArgs),
    /// Revoke a key: every replica refuses it once the revocation commits.
    Revoke(KeyIdArgs),
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// admin, tenant or worker.
    #[arg(long, default_value = "tenant")]
    pub role: String,
    /// The tenant a tenant key belongs to.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Who or what holds the key.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The nodes a worker key may register: a node name, a prefix ending
    /// in `*` (`gpu-*`), or `*` for any node.
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only this tenant's keys.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyIdArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key's id (`genfleet key list`).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Address of any scheduler replica, or several, comma-separated.
    #[arg(long, env = "GENFLEET_SCHEDULER", default_value = DEFAULT_SCHEDULER)]
    pub scheduler: String,
}

/// A client command that prints objects.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// This replica's raft id [default: 1, or from the pod name with --peer-service].
    #[arg(long)]
    pub id: Option<u64>,
    /// Directory for the raft log.
    #[arg(long, default_value = "genfleet-data/scheduler")]
    pub data_dir: PathBuf,
    /// gRPC address (clients, workers, peers); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// A file holding the bootstrap admin key (the same on every replica):
    /// with it, every client call must carry a valid key (docs/tenants.md);
    /// without, none is checked.
    #[arg(long, env = "GENFLEET_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// A folder with tls.crt, tls.key and ca.crt (as a Kubernetes TLS
    /// Secret mounts them): gRPC and the REST API over TLS, workers and
    /// peer replicas must present certificates from that CA (docs/tls.md).
    #[arg(long, env = "GENFLEET_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// A file with the cluster secret (`genfleet secrets init` makes one),
    /// the same on every replica: replicas prove themselves to each other
    /// with it, and it checks the workers' derived keys (docs/security.md).
    #[arg(long, env = "GENFLEET_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Ended jobs (completed, failed, cancelled) leave the state after this
    /// long; their files stay in the artifact store.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub retain_ended_for: Duration,
    /// At most this many ended jobs are kept, the newest.
    #[arg(long, default_value_t = 100_000)]
    pub retain_ended_max: usize,
    /// How often the leader removes the ended jobs retention lets go.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub retention_every: Duration,
    /// HTTP address of the OpenAI-compatible Videos API (/v1/videos);
    /// port 0 picks a free port. Without it, no REST API.
    #[arg(long, env = "GENFLEET_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Where the workers store artifacts (a directory, or
    /// s3://bucket/prefix), for the API's content downloads.
    #[arg(long, default_value = "genfleet-data/artifacts")]
    pub artifacts: String,
    /// HTTP address for /metrics and /healthz.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a node may be without a worker session before its jobs are requeued.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub worker_grace: Duration,
    /// The replicas a new cluster starts with, this one included:
    /// `1=http://host-a:7070,2=http://host-b:7070,3=http://host-c:7070`.
    /// Leave out for a cluster of one.
    #[arg(long, value_parser = parse_peers, default_value = "")]
    pub peers: Peers,
    /// Join a running cluster (after `genfleet cluster add-replica`) instead
    /// of starting a new one; --peers then lists the running replicas and
    /// this one.
    #[arg(long)]
    pub join: bool,
    /// Applied log entries between snapshots (log compaction).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every: u64,
    /// One raft tick; elections take 10 to 20 ticks without a leader.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub raft_tick: Duration,
    /// Running work younger than this is never preempted (a preemption
    /// costs a checkpoint and a model load elsewhere).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub min_runtime: Duration,
    /// A preempted job whose worker has not checkpointed it within this is
    /// requeued from its last checkpoint (a hung worker must not hold
    /// devices another job is waiting for).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub preempt_timeout: Duration,
    /// Kubernetes integration on the leader (Nodes mirrored, GenQueues
    /// reconciled): auto switches it on inside a pod; on also takes a
    /// kubeconfig.
    #[arg(long, env = "GENFLEET_KUBERNETES", default_value = "auto", value_parser = parse_kube_mode)]
    pub kubernetes: KubeMode,
    #[command(flatten)]
    pub statefulset: StatefulSetArgs,
}

/// Peer discovery for replicas run as a Kubernetes StatefulSet (see
/// `statefulset`): the raft id from the pod's ordinal, the peers from the
/// headless Service's DNS names.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kubernetes StatefulSet")]
pub struct StatefulSetArgs {
    /// The headless Service of the scheduler's StatefulSet; switches on
    /// discovery (instead of --id and --peers; --join still forces a join).
    #[arg(long, env = "GENFLEET_PEER_SERVICE", value_name = "NAME")]
    pub peer_service: Option<String>,
    /// This pod's name, `<statefulset>-<ordinal>` [default: $HOSTNAME].
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace [default: the pod's service account namespace].
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// The replicas the cluster was first created with; keep it when scaling
    /// (pods with a higher ordinal join).
    #[arg(long, env = "GENFLEET_INITIAL_REPLICAS", default_value_t = 3)]
    pub initial_replicas: u64,
    /// The Kubernetes cluster's DNS domain.
    #[arg(long, env = "GENFLEET_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// How a peer's host name is made; placeholders {pod} {statefulset}
    /// {ordinal} {id} {service} {namespace} {domain}.
    #[arg(
        long,
        env = "GENFLEET_PEER_HOST_TEMPLATE",
        default_value = genfleet_scheduler::kube::statefulset::DEFAULT_HOST_TEMPLATE
    )]
    pub peer_host_template: String,
}

pub use genfleet_scheduler::kube::KubeMode;

fn parse_kube_mode(s: &str) -> Result<KubeMode, String> {
    s.parse()
}

/// Replica id -> address.
pub type Peers = BTreeMap<u64, String>;

/// Parses `ID=ADDRESS,ID=ADDRESS,...`.
pub fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, address) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not ID=ADDRESS, e.g. 1=http://10.0.0.1:7070"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("replica id {id:?} in {part:?} is not a number"))?;
        if id == 0 {
            return Err(format!("replica id 0 in {part:?} is not allowed"));
        }
        let address = address.trim();
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(format!(
                "address {address:?} of replica {id} must start with http:// or https://"
            ));
        }
        if peers.insert(id, address.to_string()).is_some() {
            return Err(format!("replica {id} is given twice"));
        }
    }
    Ok(peers)
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every replica's role, term, indexes, lag and state hash.
    Status(ListArgs),
    /// Add a replica (start it first with `genfleet scheduler --join`); returns once it votes.
    AddReplica(ReplicaArgs),
    /// Remove a replica from the cluster.
    RemoveReplica(ReplicaIdArgs),
    /// Hand leadership to another replica.
    TransferLeader(ReplicaIdArgs),
    /// Back up the replicated state to a file, or restore one into a fresh cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the cluster's state (jobs, queues, tenants, key hashes, nodes)
    /// to FILE, readable by you only; FILE must not exist yet.
    Save(SnapshotFileArgs),
    /// Restore a saved state into a fresh cluster (no jobs, queues, tenants
    /// or keys yet): start one replica, restore, then add replicas.
    Restore(SnapshotFileArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotFileArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplicaArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The new replica's raft id.
    #[arg(long)]
    pub id: u64,
    /// Where its peers reach it, e.g. http://10.0.0.4:7070.
    #[arg(long)]
    pub address: String,
}

#[derive(Debug, Args)]
pub struct ReplicaIdArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The replica's raft id.
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A folder with this worker's client certificate (tls.crt, tls.key)
    /// and the cluster's ca.crt: needed to register with schedulers that
    /// use TLS (docs/tls.md).
    #[arg(long, env = "GENFLEET_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// A file with this worker's key: one derived from the cluster secret
    /// (`genfleet secrets worker-key`) or a stored one (`genfleet key create
    /// --role worker --node ...`). Not needed with a worker certificate.
    #[arg(long, env = "GENFLEET_WORKER_KEY_FILE")]
    pub worker_key_file: Option<PathBuf>,
    /// Interactive jobs store a low-resolution preview of their video after
    /// this fraction of their steps (the Videos API serves it while they
    /// run); 0 turns previews off.
    #[arg(long, default_value_t = 0.25)]
    pub preview_at: f64,
    /// Node name (defaults to the host name).
    #[arg(long, env = "GENFLEET_NODE")]
    pub node: Option<String>,
    /// Directory holding the models (`genfleet model init` creates them).
    #[arg(long, default_value = "genfleet-data/models")]
    pub models: PathBuf,
    /// Where videos and checkpoints are written: a directory, or
    /// s3://bucket/prefix for an S3-compatible store (AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION from the
    /// environment; AWS_ALLOW_HTTP=true for an endpoint without TLS).
    #[arg(long, default_value = "genfleet-data/artifacts")]
    pub artifacts: String,
    /// Jobs that may run at once on the CPU; 0 on a GPU node that should
    /// offer only its GPUs (a build with the `cuda` feature).
    #[arg(long, env = "GENFLEET_CPU_SLOTS", default_value_t = 1)]
    pub cpu_slots: u32,
    /// A running job saves a checkpoint this often and runs on, so a node
    /// lost without warning (kill -9, a spot reclaim) costs at most this
    /// much of its work; 0 turns periodic checkpoints off [default: Young
    /// and Daly's sqrt(2 x cost x MTBF) from the measured cost of a
    /// checkpoint and --node-mtbf, within 1 minute and 1 hour].
    #[arg(long, env = "GENFLEET_CHECKPOINT_EVERY", value_parser = humantime::parse_duration)]
    pub checkpoint_every: Option<Duration>,
    /// The nodes' mean time between failures, for the checkpoint interval
    /// (spot VMs: hours; on-demand GPU nodes: days to weeks).
    #[arg(long, env = "GENFLEET_NODE_MTBF", default_value = "24h", value_parser = humantime::parse_duration)]
    pub node_mtbf: Duration,
    /// On SIGTERM, the longest wait for running jobs to checkpoint at their
    /// next step and for the scheduler to record it (keep it below the
    /// pod's terminationGracePeriodSeconds).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Where to look for amdgpu devices' sysfs (`/sys/class/drm` below it);
    /// for containers that mount the host's /sys elsewhere.
    #[arg(long, env = "GENFLEET_SYSFS_ROOT", default_value = "/")]
    pub sysfs_root: PathBuf,
    /// Offer simulated devices instead of real ones, FLAVOR:COUNT[:MEMORY],
    /// e.g. nvidia-h100-80gb:8 or nvidia-l4:2:24GiB (repeatable): jobs
    /// advance at the scheduler's estimated step rate and produce no video.
    /// Without MEMORY a known flavor has its real size (h100-80gb 80GiB,
    /// h200 141GiB, a100-80gb, a100-40gb, l4 24GiB, mi300x 192GiB); others
    /// have no memory limit.
    #[arg(long, value_parser = SimulatedGroup::parse)]
    pub simulate: Vec<SimulatedGroup>,
    /// HTTP address for /metrics and /healthz.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

impl SubmitArgs {
    /// --size, or the model's own default.
    pub fn size(&self) -> (u32, u32) {
        self.size
            .unwrap_or_else(|| genfleet_proto::models::default_size(&self.model))
    }
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// What the video should show.
    #[arg(long)]
    pub prompt: String,
    /// What it should not show (the unconditional branch of guidance).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Number of frames.
    #[arg(long, default_value_t = spec::DEFAULT_FRAMES)]
    pub frames: u32,
    /// WIDTHxHEIGHT in pixels, multiples of 16 [default: 64x64 for world,
    /// the size it was trained at; 256x256 for the seeded presets].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Denoising steps.
    #[arg(long, default_value_t = spec::DEFAULT_STEPS)]
    pub steps: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classifier-free guidance scale (1 turns it off).
    #[arg(long, default_value_t = spec::DEFAULT_GUIDANCE)]
    pub guidance: f32,
    /// Frames per second of the video.
    #[arg(long, default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(genfleet_scheduler::spec::MAX_FPS)))]
    pub fps: u32,
    /// The model: world (trained, shipped with genfleet) or a seeded
    /// preset (tiny, small, ...).
    #[arg(long, default_value = "world")]
    pub model: String,
    /// The team's queue (`genfleet queue list`); `default` always exists
    /// [default: `default`, or a tenant key's default queue].
    #[arg(long)]
    pub queue: Option<String>,
    /// Devices of one node the job runs on, tensor-parallel.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(genfleet_scheduler::spec::MAX_TP)))]
    pub tp: u32,
    /// Class of service: interactive, standard or batch [default:
    /// standard, or a tenant key's default class].
    #[arg(long)]
    pub qos: Option<String>,
    /// Order among the queue's jobs of one class, higher first (-1000 to 1000).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,
    /// Follow the job with a progress bar until it ends.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only jobs in this state (pending, running, completed, failed, cancelled); repeatable.
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// Only jobs of this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// At most this many jobs, the newest (default: every job, page by page).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct JobIdArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Job id, as `genfleet jobs` shows it.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the raft log, models and artifacts.
    #[arg(long, default_value = "genfleet-data")]
    pub data_dir: PathBuf,
    /// gRPC address of the embedded scheduler.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// HTTP address for /metrics of the scheduler and workers.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// HTTP address of the OpenAI-compatible Videos API (/v1/videos).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api_listen: SocketAddr,
    /// Workers to run (each one CPU job at a time).
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Scheduler replicas (raft); their ports follow --listen's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's raft log, models and videos.
    #[arg(long, default_value = "genfleet-demo")]
    pub data_dir: PathBuf,
    /// Jobs to submit.
    #[arg(long, default_value_t = 3)]
    pub jobs: u32,
    /// Denoising steps per job.
    #[arg(long, default_value_t = spec::DEFAULT_STEPS)]
    pub steps: u32,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Create a preset's weights from a seed (nothing is downloaded).
    Init(ModelInitArgs),
    /// List the models in a directory.
    List(ModelDirArgs),
    /// Generate one video directly on a device (no cluster): time its
    /// steps, save its final latent, compare it with another device's.
    Sample(ModelSampleArgs),
    /// Train the `world` preset on the procedural world (shapes, colours,
    /// motions) and save it as <dir>/world; resumes from its checkpoint.
    Train(ModelTrainArgs),
    /// Generate videos for held-out captions and score what they show:
    /// colour, background, motion, shape and size, read from the pixels.
    Eval(ModelEvalArgs),
}

#[derive(Debug, Args)]
pub struct ModelTrainArgs {
    #[arg(long, default_value = "genfleet-data/models")]
    pub dir: PathBuf,
    /// Where checkpoints go (default: <dir>/.train-world).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    #[arg(long, default_value_t = 400)]
    pub autoencoder_steps: usize,
    #[arg(long, default_value_t = 6000)]
    pub dit_steps: usize,
    /// Clips per step.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch: u64,
    /// Side of the square clips in pixels, a multiple of 16.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u64).range(1..=65))]
    pub frames: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    HeldOut,
    Train,
}

#[derive(Debug, Args)]
pub struct ModelEvalArgs {
    #[arg(long, default_value = "genfleet-data/models")]
    pub dir: PathBuf,
    /// The model (a folder under --dir).
    #[arg(long, default_value = "world")]
    pub model: String,
    /// Captions to generate and score.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub captions: u64,
    /// held-out: combinations training never showed (the test); train:
    /// combinations it showed (how well the model fits what it saw).
    #[arg(long, value_enum, default_value_t = EvalSplit::HeldOut)]
    pub split: EvalSplit,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub steps: u64,
    /// Classifier-free guidance scale (1 turns it off).
    #[arg(long, default_value_t = 4.0)]
    pub guidance: f64,
    /// Print every caption and what its video showed.
    #[arg(long)]
    pub verbose: bool,
    /// cpu, cuda or cuda:N (needs a build with the `cuda` feature): where
    /// the videos are generated; they are scored on the CPU either way.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl ModelSampleArgs {
    /// --size, or the model's own default.
    pub fn size(&self) -> (u32, u32) {
        self.size
            .unwrap_or_else(|| genfleet_proto::models::default_size(&self.model))
    }
}

#[derive(Debug, Args)]
pub struct ModelSampleArgs {
    #[arg(long, default_value = "genfleet-data/models")]
    pub dir: PathBuf,
    /// The model (a folder under --dir).
    #[arg(long, default_value = "world")]
    pub model: String,
    /// cpu, cuda or cuda:N (needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Tensor-parallel ranks, all on --device (threads summing through the
    /// host): checks the sharded model on a machine with one GPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub tp: u32,
    #[arg(
        long,
        default_value = "a small red circle moves to the left on a navy background"
    )]
    pub prompt: String,
    /// WIDTHxHEIGHT, multiples of 16 [default: 64x64 for world, 256x256
    /// for the seeded presets].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    #[arg(long, default_value_t = spec::DEFAULT_FRAMES)]
    pub frames: u32,
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classifier-free guidance scale (1 turns it off).
    #[arg(long, default_value_t = spec::DEFAULT_GUIDANCE)]
    pub guidance: f32,
    /// Write the final latent here (safetensors, f32).
    #[arg(long)]
    pub latent: Option<PathBuf>,
    /// Compare the final latent with this one (from `--latent` of another
    /// run of the same request) and fail if they differ by more than
    /// --tolerance.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Largest difference allowed by --against, relative to the reference's
    /// largest magnitude. Default: 1e-3 for a model computing in f32, 5e-2
    /// for bf16 (8 bits of mantissa).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Write the video here (MP4, 8 fps).
    #[arg(long)]
    pub video: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ModelInitArgs {
    /// Presets, comma-separated: world (the trained weights shipped with
    /// genfleet; --seed does not apply), tiny, small, medium, wan2.1-1.3b
    /// (made from --seed).
    #[arg(long, default_value = "world", value_delimiter = ',')]
    pub preset: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value = "genfleet-data/models")]
    pub dir: PathBuf,
    /// Replace weights that exist already.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ModelDirArgs {
    #[arg(long, default_value = "genfleet-data/models")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_or_say_why_not() {
        let peers = parse_peers("1=http://a:1, 2=http://b:2").expect("valid");
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&2], "http://b:2");
        assert_eq!(parse_peers(""), Ok(BTreeMap::new()));
        assert!(parse_peers("1:http://a")
            .unwrap_err()
            .contains("ID=ADDRESS"));
        assert!(parse_peers("x=http://a")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_peers("1=a:7070").unwrap_err().contains("http://"));
        assert!(parse_peers("1=http://a,1=http://b")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_peers("0=http://a").unwrap_err().contains("0"));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a CA and certificates for schedulers and workers (for a local
    /// or test cluster; bring real ones to production, docs/tls.md).
    Init(CertsInitArgs),
    /// Issue one more certificate from an existing CA: one replica's, or a
    /// worker's for some nodes.
    Issue(CertsIssueArgs),
}

#[derive(Debug, Args)]
pub struct CertsIssueArgs {
    /// The folder with the CA (ca.crt and ca.key), as `certs init` made it.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// A scheduler replica's certificate, for this raft id.
    #[arg(long, required_unless_present = "worker", conflicts_with = "worker")]
    pub replica: Option<u64>,
    /// A worker's certificate, for these nodes: a name, a prefix ending in
    /// `*`, or `*`.
    #[arg(long)]
    pub worker: Option<String>,
    /// Where to write tls.crt, tls.key and ca.crt (refused if it holds a certificate).
    #[arg(long)]
    pub out: PathBuf,
    /// For a replica: DNS names or IP addresses it is reached at, besides
    /// localhost (comma-separated or repeated).
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Make a cluster secret and a worker key for any node, in a folder.
    Init(SecretsInitArgs),
    /// Print a worker key for some nodes, derived from the cluster secret.
    WorkerKey(WorkerKeyArgs),
}

#[derive(Debug, Args)]
pub struct SecretsInitArgs {
    /// Where to write `cluster-secret` and `worker-key` (refused if either exists).
    #[arg(long, default_value = "genfleet-secrets")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct WorkerKeyArgs {
    #[arg(long, env = "GENFLEET_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: PathBuf,
    /// The nodes the key may register: a node name, a prefix ending in
    /// `*` (`gpu-*`), or `*` for any node.
    #[arg(long)]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Where to write them (refused if it already holds a CA).
    #[arg(long, default_value = "genfleet-certs")]
    pub dir: PathBuf,
    /// DNS names or IP addresses clients reach the schedulers at, besides
    /// localhost (comma-separated or repeated).
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// How long the certificates are valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

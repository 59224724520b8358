//! One function per subcommand.

mod backup;
mod certs;
mod cluster;
mod completion;
mod demo;
mod devices;
mod jobs;
mod kube;
mod model;
mod nodes;
mod plan;
mod profile;
mod queues;
mod sample;
mod secrets;
mod servers;
mod tenants;
mod trace;
mod train;
mod video;

use crate::cli::Command;
use crate::client::ClientConfig;

/// Runs `command`; those that call a scheduler do so as `client` says.
pub async fn run(command: Command, client: &ClientConfig) -> anyhow::Result<()> {
    if matches!(
        command,
        Command::Scheduler(_) | Command::Worker(_) | Command::Up(_) | Command::Demo(_)
    ) {
        crate::private_dir::restrict_new_files();
    }
    match command {
        Command::Scheduler(args) => servers::scheduler(args).await,
        Command::Worker(args) => servers::worker(args).await,
        Command::Up(args) => servers::up(args).await,
        Command::Demo(args) => demo::run(args, client).await,
        Command::Submit(args) => jobs::submit(args, client).await,
        Command::Jobs(args) => jobs::list(args, client).await,
        Command::Get(args) => jobs::get(args, client).await,
        Command::Watch(args) => jobs::watch(args, client).await,
        Command::Cancel(args) => jobs::cancel(args, client).await,
        Command::Model(command) => model::run(command).await,
        Command::Cluster(command) => cluster::run(command, client).await,
        Command::Queue(command) => queues::run(command, client).await,
        Command::Node(command) => nodes::run(command, client).await,
        Command::Tenant(command) => tenants::run_tenant(command, client).await,
        Command::Key(command) => tenants::run_key(command, client).await,
        Command::Whoami(args) => tenants::whoami(args, client).await,
        Command::Devices(args) => devices::run(args),
        Command::Kube(command) => kube::run(command),
        Command::Certs(crate::cli::CertsCommand::Init(args)) => certs::init(args),
        Command::Certs(crate::cli::CertsCommand::Issue(args)) => certs::issue(args),
        Command::Secrets(command) => secrets::run(command),
        Command::Video(command) => video::run(command),
        Command::Plan(args) => plan::run(args),
        Command::Profile(command) => profile::run(command, client).await,
        Command::Trace(command) => trace::run(command, client).await,
        Command::Completion(args) => completion::run(args),
    }
}

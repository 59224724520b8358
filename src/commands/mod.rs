//! One function per subcommand.

mod certs;
mod cluster;
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
mod train;
mod video;

use crate::cli::Command;

pub async fn run(command: Command) -> anyhow::Result<()> {
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
        Command::Demo(args) => demo::run(args).await,
        Command::Submit(args) => jobs::submit(args).await,
        Command::Jobs(args) => jobs::list(args).await,
        Command::Get(args) => jobs::get(args).await,
        Command::Watch(args) => jobs::watch(args).await,
        Command::Cancel(args) => jobs::cancel(args).await,
        Command::Model(command) => model::run(command).await,
        Command::Cluster(command) => cluster::run(command).await,
        Command::Queue(command) => queues::run(command).await,
        Command::Node(command) => nodes::run(command).await,
        Command::Tenant(command) => tenants::run_tenant(command).await,
        Command::Key(command) => tenants::run_key(command).await,
        Command::Whoami(args) => tenants::whoami(args).await,
        Command::Devices(args) => devices::run(args),
        Command::Kube(command) => kube::run(command),
        Command::Certs(crate::cli::CertsCommand::Init(args)) => certs::init(args),
        Command::Certs(crate::cli::CertsCommand::Issue(args)) => certs::issue(args),
        Command::Secrets(command) => secrets::run(command),
        Command::Video(command) => video::run(command),
        Command::Plan(args) => plan::run(args),
        Command::Profile(command) => profile::run(command).await,
    }
}

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use genfleet::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            genfleet::say_err!("genfleet: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    // A stop that passed its deadlines may leave work behind (a job still
    // computing on a blocking thread): it must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Inside a scheduler's pod or shell: trust its CA.
    let tls_ca = cli.tls_ca.clone().or_else(|| {
        let dir = std::path::PathBuf::from(std::env::var_os("GENFLEET_TLS_DIR")?);
        Some(dir.join(genfleet_proto::tls::CA_FILE))
    });
    let client =
        match genfleet::client::ClientConfig::from_flags(cli.api_key.clone(), tls_ca.as_deref()) {
            Ok(client) => client,
            Err(e) => {
                genfleet::say_err!("genfleet: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
    // Servers log what they do; client commands stay quiet unless asked.
    let default_filter = match cli.command {
        Command::Scheduler(_) | Command::Worker(_) | Command::Up(_) => {
            "info,raft=warn,raft_engine=warn"
        }
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // A log nobody reads (stderr closed) must not take the process
        // down: tracing-subscriber would report the failed write with
        // eprintln!, which panics on a broken pipe.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match genfleet::commands::run(cli.command, &client).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            genfleet::say_err!("genfleet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

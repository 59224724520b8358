use clap::Parser;
use tracing_subscriber::EnvFilter;

use genfleet::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Servers log what they do; client commands stay quiet unless asked.
    let default_level = match cli.command {
        Command::Scheduler(_) | Command::Worker(_) | Command::Up(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match genfleet::commands::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("genfleet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `genfleet completion SHELL`: the shell's completion script on stdout.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs};

/// Prints the completion script for `args.shell`, built from the same clap
/// definition that parses the arguments, so it never lags behind them.
pub fn run(args: CompletionArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "genfleet", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        // A reader that stopped early (`| head`) is not an error, as for say!.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("write the completion script"),
    }
}

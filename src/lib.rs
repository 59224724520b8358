//! The `genfleet` binary's library: one binary, many roles (like kubectl or
//! etcdctl, one image serves every pod).
//!
//! # Layout
//! - `cli`: the command-line arguments (clap).
//! - `commands/`: one function per subcommand.
//! - `cluster`: the embedded local cluster behind `genfleet up` and `genfleet demo`.
//! - `client`: connecting to a scheduler, with errors that name the address.
//! - `render`: job and queue tables, details and progress bars.
//! - `signal`: graceful shutdown on Ctrl-C / SIGTERM.
//! - `private_dir`: the long-running roles' files are their owner's alone.
//!
//! What a scheduler replica serves (gRPC, the REST API, `/metrics`,
//! `/healthz`, `/readyz`) is the scheduler crate's; capacity planning is its own crate, `genfleet-planner` (planner/); the
//! fuzzing campaign lives in `genfleet-testkit` (testkit/), never shipped.

#[macro_use]
pub mod output;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod private_dir;
pub mod render;
pub mod signal;

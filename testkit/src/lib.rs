//! genfleet's test kit: code that exercises the system and is never
//! shipped in the binary (this crate is only a dev-dependency).
//!
//! # Layout
//! - `fuzz`: the fuzzing campaign: generated and mutated inputs against
//!   every place that takes bytes or commands from outside, a lying raft
//!   peer stepping messages into a live replica included. `cargo bench
//!   --bench fuzz` runs a million inputs; tests/suite/fuzz.rs a short campaign.

pub mod fuzz;

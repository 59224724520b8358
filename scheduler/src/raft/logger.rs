//! raft-rs logs through slog; this drain forwards its records to `tracing`
//! so the scheduler has one log stream.

use slog::{Drain, Level, OwnedKVList, Record, KV};

struct TracingDrain;

/// Collects a record's key-values as ` key=value` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let message = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{}", kv.0),
            Level::Warning => tracing::warn!(target: "raft", "{message}{}", kv.0),
            Level::Info => tracing::info!(target: "raft", "{message}{}", kv.0),
            Level::Debug => tracing::debug!(target: "raft", "{message}{}", kv.0),
            Level::Trace => tracing::trace!(target: "raft", "{message}{}", kv.0),
        }
        Ok(())
    }
}

/// A slog logger for raft-rs that writes through `tracing`.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}

//! Wall-clock time as the scheduler stamps it (Unix milliseconds). Only the
//! leader reads the clock; apply uses the time stamped on each entry.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! Files of the long-running roles are their owner's alone: the raft log
//! holds every prompt and key hash, the data folder the admin key and the
//! cluster secret, the artifact folder every tenant's videos.

use std::path::Path;

use anyhow::Context;

/// Makes `dir` (and its missing parents) readable by its owner only; an
/// existing folder is narrowed to that too.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    genfleet_scheduler::files::create_private_dir(dir)
        .with_context(|| format!("making {} a folder only its owner reads", dir.display()))
}

/// Files and folders this process makes from now on are readable by its
/// owner only (raft-engine's log files, snapshots, artifacts), whatever
/// umask it was started with.
pub fn restrict_new_files() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot
    // fail and touches no memory.
    #[cfg(unix)]
    unsafe {
        libc::umask(0o077);
    }
}

//! Folders that hold what only their owner may read: the raft log and
//! snapshots (every prompt and key hash), keys, the cluster secret, every
//! tenant's videos.

use std::path::Path;

/// Makes `dir` (and its missing parents) readable by its owner only; an
/// existing folder is narrowed to that too.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

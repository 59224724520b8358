//! Where results go: an object store (a local directory by default), one
//! folder per job.

use std::path::Path;
use std::sync::Arc;

use genfleet_proto as pb;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
}

#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// URI of the store's root, without a trailing slash.
    base_uri: String,
}

impl ArtifactStore {
    /// A store in local directory `root`, created if missing.
    pub fn local(root: &Path) -> Result<Self, ArtifactError> {
        let dir_error = |source| ArtifactError::Directory {
            path: root.display().to_string(),
            source,
        };
        std::fs::create_dir_all(root).map_err(dir_error)?;
        let root = root.canonicalize().map_err(dir_error)?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            store: Arc::new(store),
            base_uri: format!("file://{}", root.display()),
        })
    }

    /// Writes `bytes` as `<job>/<name>` and describes the result.
    pub async fn put(
        &self,
        job_id: &str,
        name: &str,
        kind: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<pb::Artifact, ArtifactError> {
        let size_bytes = bytes.len() as u64;
        let path = ObjectPath::from(format!("{job_id}/{name}"));
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(pb::Artifact {
            kind: kind.to_string(),
            uri: format!("{}/{}", self.base_uri, path),
            size_bytes,
            content_type: content_type.to_string(),
        })
    }
}

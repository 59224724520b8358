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
    #[error("{uri} is not in this worker's artifact store ({base})")]
    Elsewhere { uri: String, base: String },
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

    /// Reads an object this store (or another worker's view of the same
    /// store) wrote, by its URI.
    pub async fn get(&self, uri: &str) -> Result<Vec<u8>, ArtifactError> {
        let elsewhere = || ArtifactError::Elsewhere {
            uri: uri.to_string(),
            base: self.base_uri.clone(),
        };
        let relative = uri
            .strip_prefix(&self.base_uri)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(elsewhere)?;
        let path = ObjectPath::parse(relative).map_err(|_| elsewhere())?;
        let bytes = self.store.get(&path).await?.bytes().await?;
        Ok(bytes.to_vec())
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

//! Where results go: an object store, one folder per job. A local
//! directory by default; `s3://bucket/prefix` for any S3-compatible store
//! (AWS S3, MinIO, Ceph RGW, R2), configured the way AWS tools are, from
//! the environment: AWS_ENDPOINT_URL for a store other than AWS,
//! AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_REGION, and
//! AWS_ALLOW_HTTP=true for an endpoint without TLS (a store inside the
//! cluster). Workers that share a store can resume each other's checkpoints.
//!
//! Its own crate, below the worker (which writes videos, previews and
//! checkpoints) and the scheduler (whose REST API reads them), so that the
//! scheduler reads videos without linking the model or candle.

use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use genfleet_proto as pb;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

/// Retries of a failed S3 request (server errors, dropped connections),
/// within a bound so that an unreachable store fails a worker's start in
/// seconds rather than object_store's default of minutes.
const S3_RETRIES: usize = 3;
const S3_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Written at start to check that the store takes writes (all a worker
/// needs of it: PutObject and GetObject, not ListBucket).
const PROBE_OBJECT: &str = ".genfleet/worker-probe";

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
    #[error("artifact store {location}: {why}")]
    BadLocation { location: String, why: String },
    /// `why` is the store's error as text: object_store's errors repeat
    /// their sources in their messages, so a chained source would print twice.
    #[error("artifact store {base} does not take writes: {why}")]
    Unreachable { base: String, why: String },
}

/// An object's bytes as they arrive.
pub type ByteStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, ArtifactError>>;

#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// URI of the store's root, without a trailing slash.
    base_uri: String,
}

impl ArtifactStore {
    /// The store at `location`: `s3://bucket[/prefix]`, a local directory,
    /// or a local directory's `file:///...` URI (as [`base_uri`](Self::base_uri)
    /// writes it, so a store's URI opens the same store).
    pub fn open(location: &str) -> Result<Self, ArtifactError> {
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::s3(location, rest);
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        Self::local(Path::new(path))
    }

    /// An S3-compatible bucket, objects under `prefix` if one is given.
    fn s3(location: &str, bucket_and_prefix: &str) -> Result<Self, ArtifactError> {
        let bad = |why: String| ArtifactError::BadLocation {
            location: location.to_string(),
            why,
        };
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() {
            return Err(bad(
                "no bucket: expected s3://bucket or s3://bucket/prefix".into()
            ));
        }
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: S3_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
            })
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let (store, base_uri): (Arc<dyn ObjectStore>, String) = if prefix.is_empty() {
            (Arc::new(s3), format!("s3://{bucket}"))
        } else {
            let path = ObjectPath::parse(prefix).map_err(|e| bad(e.to_string()))?;
            (
                Arc::new(PrefixStore::new(s3, path)),
                format!("s3://{bucket}/{prefix}"),
            )
        };
        Ok(Self { store, base_uri })
    }

    /// Writes a small object once, so that a wrong endpoint, bucket or
    /// credentials stop the worker at start rather than fail its first job.
    pub async fn check(&self) -> Result<(), ArtifactError> {
        let probe = PutPayload::from_static(b"genfleet worker start\n");
        self.store
            .put(&ObjectPath::from(PROBE_OBJECT), probe)
            .await
            .map(|_| ())
            .map_err(|e| ArtifactError::Unreachable {
                base: self.base_uri.clone(),
                why: e.to_string(),
            })
    }

    /// URI of the store's root.
    pub fn base_uri(&self) -> &str {
        &self.base_uri
    }

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
        let path = self.path_of(uri)?;
        let bytes = self.store.get(&path).await?.bytes().await?;
        Ok(bytes.to_vec())
    }

    /// The object at `uri` as it arrives from the store, and its size: a
    /// download is sent on without holding the whole file in memory.
    pub async fn get_stream(&self, uri: &str) -> Result<(u64, ByteStream), ArtifactError> {
        let path = self.path_of(uri)?;
        let result = self.store.get(&path).await?;
        let size = result.meta.size;
        let stream = result.into_stream().map_err(ArtifactError::from).boxed();
        Ok((size, stream))
    }

    /// The path in the store of `uri`, which must be under its root.
    fn path_of(&self, uri: &str) -> Result<ObjectPath, ArtifactError> {
        let elsewhere = || ArtifactError::Elsewhere {
            uri: uri.to_string(),
            base: self.base_uri.clone(),
        };
        let relative = uri
            .strip_prefix(&self.base_uri)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(elsewhere)?;
        ObjectPath::parse(relative).map_err(|_| elsewhere())
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

    /// Removes job `job_id`'s file `name`; one already gone is not an error.
    pub async fn delete(&self, job_id: &str, name: &str) -> Result<(), ArtifactError> {
        let path = ObjectPath::from(format!("{job_id}/{name}"));
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local store's URI opens that store again (a REST API given the
    /// workers' store by its URI reads where they write), not a folder
    /// named `file:` under the current one.
    #[test]
    fn a_local_stores_uri_opens_the_same_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::local(dir.path()).expect("local store");
        let again = ArtifactStore::open(store.base_uri()).expect("open by URI");
        assert_eq!(again.base_uri(), store.base_uri());
        let by_path = ArtifactStore::open(&dir.path().to_string_lossy()).expect("open by path");
        assert_eq!(by_path.base_uri(), store.base_uri());
    }

    /// A job's file is removed; removing it again is no error.
    #[tokio::test]
    async fn a_file_is_deleted_once_and_a_second_delete_is_quiet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::local(dir.path()).expect("local store");
        let put = store.put(
            "j-1",
            "checkpoint-8.safetensors",
            "checkpoint",
            "x",
            vec![1, 2],
        );
        let stored = put.await.expect("put");
        store
            .delete("j-1", "checkpoint-8.safetensors")
            .await
            .expect("delete");
        assert!(store.get(&stored.uri).await.is_err(), "the file is gone");
        store
            .delete("j-1", "checkpoint-8.safetensors")
            .await
            .expect("a second delete");
    }
}

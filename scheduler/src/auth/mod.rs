//! Who is calling, proved before any request body is read (every check
//! here runs in a gRPC interceptor, on the request's headers).
//!
//! - Clients present a bearer key, checked against the replica's bootstrap
//!   admin key and the replicated keys (hashes only). Keys read
//!   `gf_<id>_<secret>`: the id finds the stored hash, the hash of the whole
//!   text must match. Revoking a key removes it from the state, so a replica
//!   refuses it as soon as it has applied the revocation.
//! - Workers present a worker key bound to a node pattern (stored, or
//!   derived from the cluster secret: `cluster_secret`) or a certificate
//!   that names them (`certificate`).
//! - Replicas present a credential derived from the cluster secret, or a
//!   certificate that names them.
//!
//! A scheduler with no admin key, no cluster secret and no TLS is open (a
//! laptop): it checks nothing, and warns when it listens off loopback.
//! docs/security.md is the threat model.

pub mod certificate;
pub mod cluster_secret;

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

pub use crate::node_pattern::NodePattern;
use crate::raft::RaftHandle;
use certificate::CertIdentity;
use cluster_secret::{ClusterSecret, Derived};
use genfleet_proto as pb;

/// The metadata (HTTP header) a key travels in, as `Bearer <key>`.
pub const AUTHORIZATION: &str = "authorization";
/// Shortest bootstrap admin key accepted: a guessable one protects nothing.
pub const MIN_ADMIN_KEY_CHARS: usize = 24;

/// Who a checked key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
    /// A worker that may register the nodes the pattern matches.
    Worker(NodePattern),
    /// A scheduler replica; `None`: a credential good for any replica id.
    Replica(Option<u64>),
}

/// The caller of one request, put in its extensions by [`Authenticator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// The key's id; empty for the bootstrap admin key or an open cluster.
    pub key_id: String,
}

impl Caller {
    /// The tenant whose jobs alone this caller may see; `None`: every job.
    pub fn tenant(&self) -> Option<&str> {
        match &self.principal {
            Principal::Tenant(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.principal == Principal::Admin
    }

    pub fn require_admin(&self) -> Result<(), Status> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "this call needs an admin key (cluster, node, queue, tenant and key commands are an admin's)",
            ))
        }
    }
}

/// The caller a handler runs for: set by the service's interceptor.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("the request was not authenticated"))
}

pub fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Equal bytes, in time that does not depend on where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new key: its id and its full text (shown once, stored as a hash).
pub fn generate_key() -> (String, String) {
    let id = format!("{:012x}", rand::random::<u64>() >> 16);
    let secret: String = (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let text = format!("gf_{id}_{secret}");
    (id, text)
}

/// The id part of a key's text, if it has the shape of one.
fn key_id(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("gf_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// The key a request presents, from `authorization: Bearer <key>`.
pub fn presented_key(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    let Some(value) = metadata.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
    let key = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| Status::unauthenticated("give the key as `authorization: Bearer <key>`"))?;
    Ok(Some(key.trim().to_string()))
}

#[derive(Clone)]
pub struct Authenticator {
    raft: RaftHandle,
    /// SHA-256 of the bootstrap admin key; `None`: client keys are not checked.
    admin_sha256: Option<Vec<u8>>,
    /// Checks replicas' and derived workers' credentials.
    secret: Option<ClusterSecret>,
    /// Whether callers come over TLS and may present certificates.
    tls: bool,
}

/// The worker a worker-session call comes from, put in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCaller(pub NodePattern);

/// The replica a raft call comes from (`None`: a credential good for any
/// member), put in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCaller(pub Option<u64>);

impl Authenticator {
    pub fn new(
        raft: RaftHandle,
        admin_key: Option<&str>,
        secret: Option<ClusterSecret>,
        tls: bool,
    ) -> Self {
        Self {
            raft,
            admin_sha256: admin_key.map(sha256),
            secret,
            tls,
        }
    }

    /// Whether client calls must carry a key.
    pub fn enforced(&self) -> bool {
        self.admin_sha256.is_some()
    }

    /// A scheduler that checks nobody: no admin key, no cluster secret, no TLS.
    pub fn open(&self) -> bool {
        self.admin_sha256.is_none() && self.secret.is_none() && !self.tls
    }

    /// The caller `metadata`'s key says; refused if the cluster checks keys
    /// and the key is missing, malformed, unknown or revoked.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if self.admin_sha256.is_none() {
            return Ok(Caller {
                principal: Principal::Admin,
                key_id: String::new(),
            });
        }
        let key = presented_key(metadata)?.ok_or_else(|| {
            Status::unauthenticated(
                "this cluster needs an API key: pass --api-key or set GENFLEET_API_KEY",
            )
        })?;
        self.caller_of_key(&key)
    }

    /// Whose key `key` is: the bootstrap admin's, a derived credential's,
    /// or a stored key's.
    fn caller_of_key(&self, key: &str) -> Result<Caller, Status> {
        let unknown = || Status::unauthenticated("the API key is not valid (unknown or revoked)");
        let hash = sha256(key);
        if let Some(admin) = &self.admin_sha256 {
            if same(&hash, admin) {
                return Ok(Caller {
                    principal: Principal::Admin,
                    key_id: String::new(),
                });
            }
        }
        if ClusterSecret::looks_derived(key) {
            let derived = self.secret.as_ref().and_then(|s| s.verify(key));
            let principal = match derived.ok_or_else(unknown)? {
                Derived::Replica(id) => Principal::Replica(Some(id)),
                Derived::Worker(pattern) => Principal::Worker(pattern),
            };
            return Ok(Caller {
                principal,
                key_id: String::new(),
            });
        }
        let id = key_id(key).ok_or_else(unknown)?;
        let stored = self
            .raft
            .read(|state| state.key(id).cloned())
            .filter(|k| same(&k.secret_sha256, &hash));
        let Some(stored) = stored else {
            // A replica that has not applied its term's entries yet (just
            // restarted, catching up) may not know a key created lately:
            // a retry elsewhere or later will, so say so instead of
            // calling a good key bad.
            if let Err(behind) = self.raft.status().readiness() {
                return Err(Status::unavailable(format!(
                    "this replica cannot check keys yet ({behind}); retry"
                )));
            }
            return Err(unknown());
        };
        let principal = match stored.role() {
            pb::Role::Admin => Principal::Admin,
            pb::Role::Tenant => Principal::Tenant(stored.tenant),
            pb::Role::Worker => {
                Principal::Worker(NodePattern::parse(&stored.node).map_err(|_| unknown())?)
            }
            // The state refuses stored replica keys: none can be found.
            pb::Role::Replica | pb::Role::Unspecified => return Err(unknown()),
        };
        Ok(Caller {
            principal,
            key_id: stored.id,
        })
    }

    /// What a cluster member's call proves: its certificate's genfleet
    /// identity if it presented one, else its bearer credential; `None`
    /// when it presented neither.
    fn member<T>(&self, request: &Request<T>) -> Result<Option<Principal>, Status> {
        if self.tls {
            let named = request
                .peer_certs()
                .and_then(|chain| chain.first().map(|leaf| certificate::identities(leaf)))
                .and_then(|names| names.into_iter().next());
            match named {
                Some(CertIdentity::Replica(id)) => return Ok(Some(Principal::Replica(id))),
                Some(CertIdentity::Worker(pattern)) => return Ok(Some(Principal::Worker(pattern))),
                None => {}
            }
        }
        match presented_key(request.metadata())? {
            Some(key) => self.caller_of_key(&key).map(|c| Some(c.principal)),
            None => Ok(None),
        }
    }

    /// The nodes a worker-session call may register.
    pub fn worker<T>(&self, request: &Request<T>) -> Result<NodePattern, Status> {
        match self.member(request)? {
            Some(Principal::Worker(pattern)) => Ok(pattern),
            None if self.open() => Ok(NodePattern::Any),
            None => Err(Status::unauthenticated(
                "a worker session needs a worker key (--worker-key-file) or a client \
                 certificate that names a worker (docs/security.md)",
            )),
            Some(_) => Err(Status::permission_denied(
                "only a worker key or a worker certificate opens a worker session",
            )),
        }
    }

    /// The replica a raft call comes from (`None`: any member).
    pub fn replica<T>(&self, request: &Request<T>) -> Result<Option<u64>, Status> {
        match self.member(request)? {
            Some(Principal::Replica(id)) => Ok(id),
            None if self.open() => Ok(None),
            None => Err(Status::unauthenticated(
                "raft messages need a replica credential (--cluster-secret-file) or a client \
                 certificate that names a replica (docs/security.md)",
            )),
            Some(_) => Err(Status::permission_denied(
                "only a scheduler replica may send raft messages",
            )),
        }
    }

    /// An interceptor that authenticates and then lets `allowed` decide.
    pub fn interceptor(
        &self,
        allowed: fn(&Caller) -> Result<(), Status>,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        let auth = self.clone();
        move |mut request: Request<()>| {
            let caller = auth.authenticate(request.metadata())?;
            allowed(&caller)?;
            request.extensions_mut().insert(caller);
            Ok(request)
        }
    }

    /// Admits workers only, and says which nodes they may register.
    pub fn worker_interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        self.member_interceptor(|auth, request| auth.worker(request).map(WorkerCaller))
    }

    /// Admits replicas only, and says which one.
    pub fn replica_interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        self.member_interceptor(|auth, request| auth.replica(request).map(ReplicaCaller))
    }

    /// An interceptor that puts what `prove` makes of a member's call in
    /// its extensions, or refuses it.
    fn member_interceptor<P: Clone + Send + Sync + 'static>(
        &self,
        prove: fn(&Self, &Request<()>) -> Result<P, Status>,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        let auth = self.clone();
        move |mut request: Request<()>| {
            let proved = prove(&auth, &request)?;
            request.extensions_mut().insert(proved);
            Ok(request)
        }
    }
}

/// Any authenticated caller.
pub fn anyone(_: &Caller) -> Result<(), Status> {
    Ok(())
}

pub fn admins(caller: &Caller) -> Result<(), Status> {
    caller.require_admin()
}

/// Clients' calls: an admin or a tenant, not a worker key.
pub fn clients(caller: &Caller) -> Result<(), Status> {
    match caller.principal {
        Principal::Admin | Principal::Tenant(_) => Ok(()),
        Principal::Worker(_) => Err(Status::permission_denied(
            "a worker key can only open worker sessions",
        )),
        Principal::Replica(_) => Err(Status::permission_denied(
            "a replica credential can only send raft messages",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_an_id_and_a_secret() {
        let (id, text) = generate_key();
        assert_eq!(key_id(&text), Some(id.as_str()));
        assert_eq!(text.len(), 3 + 12 + 1 + 64);
        let (other, _) = generate_key();
        assert_ne!(id, other);
        for bad in ["", "gf_", "gf_abc", "gf__x", "sk_abc_def", "gf_abc_"] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn bearer_keys_are_read_from_the_header() {
        let mut metadata = MetadataMap::new();
        assert_eq!(presented_key(&metadata).ok(), Some(None));
        metadata.insert(AUTHORIZATION, "Bearer gf_a_b".parse().expect("ascii"));
        assert_eq!(
            presented_key(&metadata).ok(),
            Some(Some("gf_a_b".to_string()))
        );
        metadata.insert(AUTHORIZATION, "Basic abc".parse().expect("ascii"));
        let refused = presented_key(&metadata).expect_err("not a bearer key");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn hashes_compare_whole() {
        assert!(same(&sha256("a"), &sha256("a")));
        assert!(!same(&sha256("a"), &sha256("b")));
        assert!(!same(&sha256("a"), &sha256("a")[..31]));
    }
}

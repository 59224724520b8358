//! Who is calling: the bearer key of a request, checked against the
//! replica's bootstrap admin key and the replicated keys (hashes only).
//!
//! A cluster configured with an admin key checks every call; one without
//! (a laptop, a test) checks none and treats every caller as an admin.
//! Keys read `gf_<id>_<secret>`: the id finds the stored hash, the hash of
//! the whole text must match. Revoking a key removes it from the state, so
//! a replica refuses it as soon as it has applied the revocation.

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::raft::RaftHandle;
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
    Worker,
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
fn same(a: &[u8], b: &[u8]) -> bool {
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
    /// SHA-256 of the bootstrap admin key; `None`: no key is checked.
    admin_sha256: Option<Vec<u8>>,
}

impl Authenticator {
    pub fn new(raft: RaftHandle, admin_key: Option<&str>) -> Self {
        Self {
            raft,
            admin_sha256: admin_key.map(sha256),
        }
    }

    /// Whether calls must carry a key.
    pub fn enforced(&self) -> bool {
        self.admin_sha256.is_some()
    }

    /// The caller `metadata`'s key says; refused if the cluster checks keys
    /// and the key is missing, malformed, unknown or revoked.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(admin) = &self.admin_sha256 else {
            return Ok(Caller {
                principal: Principal::Admin,
                key_id: String::new(),
            });
        };
        let key = presented_key(metadata)?.ok_or_else(|| {
            Status::unauthenticated(
                "this cluster needs an API key: pass --api-key or set GENFLEET_API_KEY",
            )
        })?;
        let hash = sha256(&key);
        if same(&hash, admin) {
            return Ok(Caller {
                principal: Principal::Admin,
                key_id: String::new(),
            });
        }
        let unknown = || Status::unauthenticated("the API key is not valid (unknown or revoked)");
        let id = key_id(&key).ok_or_else(unknown)?;
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
            pb::Role::Worker => Principal::Worker,
            pb::Role::Unspecified => return Err(unknown()),
        };
        Ok(Caller {
            principal,
            key_id: stored.id,
        })
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
}

/// Admits workers and peer replicas. With TLS on, the caller must have
/// presented a client certificate, which the TLS handshake has already
/// checked against the cluster's CA: without one a worker cannot register
/// and a process cannot send raft messages. Without TLS, anyone may (a
/// laptop's cluster; the scheduler warns when such a one is reachable from
/// other machines).
pub fn cluster_members(tls: bool) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        if tls && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated(
                "workers and scheduler replicas must present a client certificate \
                 signed by the cluster's CA (mutual TLS; see docs/tls.md)",
            ));
        }
        Ok(request)
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
        Principal::Worker => Err(Status::permission_denied(
            "a worker key can only open worker sessions",
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

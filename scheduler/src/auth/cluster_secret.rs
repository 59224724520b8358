//! Credentials derived from the cluster secret: a replica's (`gfr_<id>_<mac>`)
//! and a worker's (`gfw_<node pattern>_<mac>`), each the HMAC-SHA256 of its
//! role and name under the secret. Replicas hold the secret and so can check
//! any credential without state (a replica must prove itself before the
//! cluster has any state), and the secret never crosses the network.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::same;
use crate::node_pattern::NodePattern;

/// Shortest cluster secret accepted (`openssl rand -hex 32` makes 64).
pub const MIN_SECRET_CHARS: usize = 32;
const REPLICA_PREFIX: &str = "gfr_";
const WORKER_PREFIX: &str = "gfw_";

/// What a derived credential proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derived {
    Replica(u64),
    Worker(NodePattern),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the cluster secret {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster secret must have at least {MIN_SECRET_CHARS} characters (make one with `genfleet secrets init` or `openssl rand -hex 32`)")]
    TooShort,
}

#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.chars().count() < MIN_SECRET_CHARS {
            return Err(SecretError::TooShort);
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text)
    }

    /// A new secret: 256 random bits as 64 hex characters.
    pub fn generate() -> String {
        (0..4)
            .map(|_| format!("{:016x}", rand::random::<u64>()))
            .collect()
    }

    fn mac(&self, purpose: &str) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(purpose.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Replica `id`'s credential, sent on its raft streams.
    pub fn replica_credential(&self, id: u64) -> String {
        format!(
            "{REPLICA_PREFIX}{id}_{}",
            self.mac(&format!("genfleet replica {id}"))
        )
    }

    /// A worker key for the nodes `pattern` matches.
    pub fn worker_key(&self, pattern: &NodePattern) -> String {
        format!(
            "{WORKER_PREFIX}{pattern}_{}",
            self.mac(&format!("genfleet worker {pattern}"))
        )
    }

    /// What `text` proves, if it is a credential made from this secret.
    pub fn verify(&self, text: &str) -> Option<Derived> {
        if let Some(rest) = text.strip_prefix(REPLICA_PREFIX) {
            let (id, _) = rest.split_once('_')?;
            let id: u64 = id.parse().ok().filter(|id| *id != 0)?;
            let expected = self.replica_credential(id);
            return same(expected.as_bytes(), text.as_bytes()).then_some(Derived::Replica(id));
        }
        let rest = text.strip_prefix(WORKER_PREFIX)?;
        let (pattern, _) = rest.rsplit_once('_')?;
        let pattern = NodePattern::parse(pattern).ok()?;
        let expected = self.worker_key(&pattern);
        same(expected.as_bytes(), text.as_bytes()).then_some(Derived::Worker(pattern))
    }

    /// Whether `text` has the shape of a derived credential (to say the
    /// right thing when a cluster without a secret is shown one).
    pub fn looks_derived(text: &str) -> bool {
        text.starts_with(REPLICA_PREFIX) || text.starts_with(WORKER_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::from_text(&ClusterSecret::generate()).expect("a new secret")
    }

    #[test]
    fn derived_credentials_prove_their_role_and_name() {
        let s = secret();
        assert_eq!(
            s.verify(&s.replica_credential(2)),
            Some(Derived::Replica(2))
        );
        let pattern = NodePattern::parse("gpu_a-*").expect("pattern");
        assert_eq!(
            s.verify(&s.worker_key(&pattern)),
            Some(Derived::Worker(pattern))
        );
    }

    #[test]
    fn a_credential_cannot_be_bent_to_another_name_or_secret() {
        let s = secret();
        let two = s.replica_credential(2);
        // The MAC of replica 2 under the name of replica 3.
        let forged = two.replacen("gfr_2_", "gfr_3_", 1);
        assert_eq!(s.verify(&forged), None);
        let one_node = s.worker_key(&NodePattern::Exact("gpu-1".into()));
        assert_eq!(s.verify(&one_node.replacen("gpu-1", "*", 1)), None);
        assert_eq!(secret().verify(&two), None, "another cluster's secret");
        for junk in [
            "", "gfr_", "gfr_0_ab", "gfr_x_ab", "gfw__ab", "gfw_*", "gf_a_b",
        ] {
            assert_eq!(s.verify(junk), None, "{junk}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            ClusterSecret::from_text("tooshort"),
            Err(SecretError::TooShort)
        ));
        assert!(!format!("{:?}", secret()).contains(|c: char| c.is_ascii_digit()));
    }
}

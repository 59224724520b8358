//! Identities carried by certificates: a URI SAN `spiffe://genfleet/replica/<id>`
//! (or `/replica/*`: any replica) or `spiffe://genfleet/worker/<node pattern>`,
//! as `genfleet certs` and a cert-manager `Certificate` with `uris:` issue
//! them. The TLS handshake has already checked the chain to the cluster's CA;
//! this reads what the certificate says its holder is.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::node_pattern::NodePattern;

/// The URI prefix of every genfleet identity.
pub const SPIFFE_PREFIX: &str = "spiffe://genfleet/";

/// Who a certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    /// `None`: any replica id (one certificate shared by every replica).
    Replica(Option<u64>),
    Worker(NodePattern),
}

impl CertIdentity {
    /// The URI SAN that names this identity.
    pub fn uri(&self) -> String {
        match self {
            Self::Replica(Some(id)) => format!("{SPIFFE_PREFIX}replica/{id}"),
            Self::Replica(None) => format!("{SPIFFE_PREFIX}replica/*"),
            Self::Worker(pattern) => format!("{SPIFFE_PREFIX}worker/{pattern}"),
        }
    }

    /// The identity a genfleet URI names; `None` for any other URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(SPIFFE_PREFIX)?;
        if let Some(id) = rest.strip_prefix("replica/") {
            if id == "*" {
                return Some(Self::Replica(None));
            }
            return id
                .parse()
                .ok()
                .filter(|id| *id != 0)
                .map(|id| Self::Replica(Some(id)));
        }
        let pattern = rest.strip_prefix("worker/")?;
        NodePattern::parse(pattern).ok().map(Self::Worker)
    }
}

/// The genfleet identities in a DER certificate's URI SANs (none for a
/// certificate that cannot be read or names none).
pub fn identities(der: &[u8]) -> Vec<CertIdentity> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => CertIdentity::from_uri(uri),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for identity in [
            CertIdentity::Replica(Some(3)),
            CertIdentity::Replica(None),
            CertIdentity::Worker(NodePattern::Any),
            CertIdentity::Worker(NodePattern::Exact("gpu-7".into())),
            CertIdentity::Worker(NodePattern::Prefix("gpu-".into())),
        ] {
            assert_eq!(CertIdentity::from_uri(&identity.uri()), Some(identity));
        }
        for other in [
            "spiffe://other/replica/1",
            "spiffe://genfleet/replica/0",
            "spiffe://genfleet/replica/x",
            "spiffe://genfleet/admin",
            "spiffe://genfleet/worker/",
            "https://genfleet/worker/a",
        ] {
            assert_eq!(CertIdentity::from_uri(other), None, "{other}");
        }
    }

    #[test]
    fn junk_is_no_identity() {
        assert!(identities(b"not a certificate").is_empty());
    }
}

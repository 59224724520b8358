//! TLS as every part of genfleet uses it. A part's TLS directory is laid out
//! as a Kubernetes TLS Secret (and cert-manager) mounts one: `tls.crt` (its
//! certificate chain), `tls.key` (its private key) and `ca.crt` (the CA its
//! peers' certificates must chain to). Schedulers serve with it and ask
//! clients for a certificate (optional: API clients have none, workers and
//! peer replicas must present one); workers and replicas dial with it.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const CA_FILE: &str = "ca.crt";

#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A PEM file's bytes, refused with the path when it cannot be read or
/// holds no PEM block of `label`.
pub fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TlsError(format!("TLS: cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(label) {
        return Err(TlsError(format!(
            "TLS: {} is not a PEM file with a {label}",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The certificate, key and CA of one part, read at start.
#[derive(Clone)]
pub struct TlsDir {
    pub dir: PathBuf,
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for TlsDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsDir").field("dir", &self.dir).finish()
    }
}

impl TlsDir {
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            cert: read_pem(&dir.join(CERT_FILE), "CERTIFICATE")?,
            key: read_pem(&dir.join(KEY_FILE), "PRIVATE KEY")?,
            ca: read_pem(&dir.join(CA_FILE), "CERTIFICATE")?,
        })
    }

    /// The certificate chain in PEM (`tls.crt`).
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert
    }

    /// The private key in PEM (`tls.key`).
    pub fn key_pem(&self) -> &[u8] {
        &self.key
    }

    /// The CA certificate in PEM (`ca.crt`).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca
    }

    /// Serving: this part's certificate; a client certificate is asked
    /// for and, when one is sent, must chain to the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(true)
    }

    /// Dialing: trusts the CA only, and presents this part's certificate.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
}

/// A client of the API: trusts the CA in `ca` (PEM), presents nothing.
pub fn api_client(ca: &[u8]) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca))
}

/// An endpoint for `address`; with `tls`, dialed over TLS whatever scheme
/// the address names (peer addresses are written `http://` by tools that
/// do not know whether the cluster uses TLS).
pub fn endpoint(address: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, TlsError> {
    let bad = |e: &dyn std::fmt::Display| TlsError(format!("{address:?} is not an address: {e}"));
    let Some(tls) = tls else {
        return Endpoint::from_shared(address.to_string()).map_err(|e| bad(&e));
    };
    let address = match address.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => address.to_string(),
    };
    Endpoint::from_shared(address.clone())
        .map_err(|e| bad(&e))?
        .tls_config(tls.clone())
        .map_err(|e| bad(&e))
}

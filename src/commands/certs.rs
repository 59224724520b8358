//! `genfleet certs init`: a development CA and certificates for a local or
//! test cluster, laid out as Kubernetes TLS Secrets mount them (tls.crt,
//! tls.key, ca.crt), one folder per role. Real clusters bring their own
//! (cert-manager, a company CA): docs/tls.md.

use std::path::Path;

use anyhow::Context;
use genfleet_proto::tls::{CA_FILE, CERT_FILE, KEY_FILE};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::cli::CertsInitArgs;

/// Names every scheduler certificate carries: the replica's REST front
/// calls its own gRPC port on loopback, and a local cluster is reached
/// there.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

pub fn init(args: CertsInitArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    let ca_path = dir.join(CA_FILE);
    if ca_path.exists() {
        anyhow::bail!(
            "{} exists: certificates were issued from that CA; remove {} to start over",
            ca_path.display(),
            dir.display()
        );
    }
    if args.days == 0 || args.days > 3650 {
        anyhow::bail!("--days {} must be between 1 and 3650", args.days);
    }
    let mut hosts: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
    for host in &args.hosts {
        let host = host.trim();
        if host.is_empty() || host.contains(['/', ':']) && host.parse::<std::net::IpAddr>().is_err()
        {
            anyhow::bail!("--host {host:?} is not a DNS name or IP address");
        }
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
    }
    let validity = Validity::days(args.days);

    let ca_key = KeyPair::generate().context("making the CA's key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "genfleet development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity.apply(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    // Schedulers serve clients and dial their peers: both uses.
    let scheduler = leaf(
        "genfleet-scheduler",
        hosts.clone(),
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &validity,
        &issuer,
    )?;
    let worker = leaf(
        "genfleet-worker",
        vec!["genfleet-worker".into()],
        &[ExtendedKeyUsagePurpose::ClientAuth],
        &validity,
        &issuer,
    )?;

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_role(&dir.join("scheduler"), &scheduler, &ca_pem)?;
    write_role(&dir.join("worker"), &worker, &ca_pem)?;
    write(
        &dir.join("ca.key"),
        issuer.key().serialize_pem().as_bytes(),
        true,
    )?;
    // Last: its presence says the folder is complete.
    write(&ca_path, ca_pem.as_bytes(), false)?;

    say!(
        "a development CA and certificates, valid {} days, in {}:",
        args.days,
        dir.display()
    );
    say!("  ca.crt, ca.key       the CA (keep ca.key private; clients trust ca.crt)");
    say!(
        "  scheduler/           --tls-dir of every scheduler replica (names: {})",
        hosts.join(", ")
    );
    say!("  worker/              --tls-dir of every worker (a client certificate)");
    say!("then: genfleet scheduler --tls-dir {0}/scheduler ...; genfleet worker --tls-dir {0}/worker --scheduler https://HOST:7070 ...;", dir.display());
    say!(
        "      genfleet --tls-ca {}/ca.crt jobs --scheduler https://HOST:7070",
        dir.display()
    );
    Ok(())
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
}

fn leaf(
    name: &str,
    sans: Vec<String>,
    usages: &[ExtendedKeyUsagePurpose],
    validity: &Validity,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<Leaf> {
    let key = KeyPair::generate().with_context(|| format!("making {name}'s key"))?;
    let mut params = CertificateParams::new(sans).with_context(|| format!("{name}'s names"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = usages.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity.apply(&mut params);
    let cert = params.signed_by(&key, issuer)?;
    Ok(Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

struct Validity {
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clocks differ a little) for `days` days.
    fn days(days: u32) -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self {
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(i64::from(days)),
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before;
        params.not_after = self.not_after;
    }
}

fn write_role(dir: &Path, leaf: &Leaf, ca_pem: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write(&dir.join(CERT_FILE), leaf.cert.as_bytes(), false)?;
    write(&dir.join(KEY_FILE), leaf.key.as_bytes(), true)?;
    write(&dir.join(CA_FILE), ca_pem.as_bytes(), false)
}

/// Writes a new file; a key is readable by its owner only.
fn write(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

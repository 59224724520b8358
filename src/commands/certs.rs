//! `genfleet certs init`: a development CA and certificates for a local or
//! test cluster, laid out as Kubernetes TLS Secrets mount them (tls.crt,
//! tls.key, ca.crt), one folder per role; `certs issue`: one more from that
//! CA. Each certificate names its role and name as a URI SAN
//! (`spiffe://genfleet/replica/<id>`, `spiffe://genfleet/worker/<nodes>`),
//! which the schedulers read to know who is calling. Real clusters bring
//! their own (cert-manager, a company CA): docs/tls.md.

use std::path::Path;

use anyhow::Context;
use genfleet_proto::tls::{CA_FILE, CERT_FILE, KEY_FILE};
use genfleet_scheduler::auth::certificate::CertIdentity;
use genfleet_scheduler::auth::NodePattern;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::cli::{CertsInitArgs, CertsIssueArgs};

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
    let hosts = scheduler_names(&args.hosts)?;
    let validity = Validity::days(args.days)?;

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
    // One scheduler certificate for every replica (any replica id) and
    // one worker certificate for every node: a laptop's or a test's
    // cluster. `certs issue` makes ones bound to one replica or node.
    let scheduler = leaf(
        &CertIdentity::Replica(None),
        hosts.clone(),
        &validity,
        &issuer,
    )?;
    let worker = leaf(
        &CertIdentity::Worker(NodePattern::Any),
        Vec::new(),
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
        "  scheduler/           --tls-dir of every scheduler replica (any replica id; names: {})",
        hosts.join(", ")
    );
    say!("  worker/              --tls-dir of every worker (a client certificate for any node)");
    say!(
        "one replica's or some nodes' own: genfleet certs issue --ca-dir {} --replica 2 --out DIR",
        dir.display()
    );
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

/// A certificate for `identity`, named by its URI SAN; a replica's also
/// serves (TLS server names `hosts`) and dials its peers, a worker's only dials.
fn leaf(
    identity: &CertIdentity,
    hosts: Vec<String>,
    validity: &Validity,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<Leaf> {
    let (name, usages) = match identity {
        CertIdentity::Replica(_) => (
            "genfleet-scheduler",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ),
        CertIdentity::Worker(_) => ("genfleet-worker", vec![ExtendedKeyUsagePurpose::ClientAuth]),
    };
    let key = KeyPair::generate().with_context(|| format!("making {name}'s key"))?;
    let mut params = CertificateParams::new(hosts).with_context(|| format!("{name}'s names"))?;
    let uri = identity.uri();
    params.subject_alt_names.push(SanType::URI(
        uri.as_str()
            .try_into()
            .with_context(|| format!("{uri} as a URI name"))?,
    ));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = usages;
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

/// The TLS names of a scheduler certificate: loopback and every `--host`.
fn scheduler_names(given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut hosts: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
    for host in given {
        let host = host.trim();
        if host.is_empty() || host.contains(['/', ':']) && host.parse::<std::net::IpAddr>().is_err()
        {
            anyhow::bail!("--host {host:?} is not a DNS name or IP address");
        }
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
    }
    Ok(hosts)
}

/// `genfleet certs issue`: one replica's or worker's certificate from the
/// CA `certs init` made (or any CA whose key is at hand).
pub fn issue(args: CertsIssueArgs) -> anyhow::Result<()> {
    let identity = match (args.replica, &args.worker) {
        (Some(0), _) => anyhow::bail!("--replica 0: replica ids start at 1"),
        (Some(id), None) => CertIdentity::Replica(Some(id)),
        (None, Some(nodes)) => CertIdentity::Worker(NodePattern::parse(nodes)?),
        _ => anyhow::bail!("give one of --replica ID or --worker NODES"),
    };
    if !args.hosts.is_empty() && matches!(identity, CertIdentity::Worker(_)) {
        anyhow::bail!("--host names where a replica is reached; a worker's certificate has none");
    }
    let cert_path = args.out.join(CERT_FILE);
    if cert_path.exists() {
        anyhow::bail!(
            "{} exists: remove it to issue a new certificate there",
            cert_path.display()
        );
    }
    let read = |name: &str| {
        let path = args.ca_dir.join(name);
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading the CA's {}", path.display()))
    };
    let (ca_pem, ca_key) = (read(CA_FILE)?, read("ca.key")?);
    let key =
        KeyPair::from_pem(&ca_key).context("the CA's key (ca.key) is not a PEM private key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
        .context("the CA's certificate (ca.crt) cannot be read")?;
    let hosts = match identity {
        CertIdentity::Replica(_) => scheduler_names(&args.hosts)?,
        CertIdentity::Worker(_) => Vec::new(),
    };
    let validity = Validity::days(args.days)?;
    let leaf = leaf(&identity, hosts, &validity, &issuer)?;
    write_role(&args.out, &leaf, &ca_pem)?;
    say!(
        "{} for {}, valid {} days, in {} (tls.crt, tls.key, ca.crt)",
        match identity {
            CertIdentity::Replica(_) => "a replica certificate",
            CertIdentity::Worker(_) => "a worker certificate",
        },
        identity.uri(),
        args.days,
        args.out.display()
    );
    Ok(())
}

struct Validity {
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clocks differ a little) for `days` days.
    fn days(days: u32) -> anyhow::Result<Self> {
        if days == 0 || days > 3650 {
            anyhow::bail!("--days {days} must be between 1 and 3650");
        }
        let now = time::OffsetDateTime::now_utc();
        Ok(Self {
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(i64::from(days)),
        })
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

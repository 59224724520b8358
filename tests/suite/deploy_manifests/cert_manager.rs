//! The cert-manager objects of deploy/components/tls/cert-manager, checked
//! without cert-manager: kubernetes-validate has no schema for them, so the
//! fields are held to cert-manager.io/v1's (a misspelled `uri:` would be
//! dropped by a lenient apply and give a certificate without its role), and
//! the chain and names to what the pods mount and dial.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::objects::{container, env, find, flag, strings};

const API_VERSION: &str = "cert-manager.io/v1";

/// cert-manager.io/v1 Certificate `spec` fields (its CRD's schema).
const CERTIFICATE_FIELDS: &[&str] = &[
    "additionalOutputFormats",
    "commonName",
    "dnsNames",
    "duration",
    "emailAddresses",
    "encodeUsagesInRequest",
    "ipAddresses",
    "isCA",
    "issuerRef",
    "keystores",
    "literalSubject",
    "nameConstraints",
    "otherNames",
    "privateKey",
    "renewBefore",
    "renewBeforePercentage",
    "revisionHistoryLimit",
    "secretName",
    "secretTemplate",
    "signatureAlgorithm",
    "subject",
    "uris",
    "usages",
];
const PRIVATE_KEY_FIELDS: &[&str] = &["algorithm", "encoding", "rotationPolicy", "size"];
const ISSUER_REF_FIELDS: &[&str] = &["group", "kind", "name"];
/// The values `usages` may take (the CRD's enum).
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];
/// An Issuer's `spec` holds exactly one of these.
const ISSUER_TYPES: &[&str] = &["acme", "ca", "selfSigned", "vault", "venafi"];
const CA_ISSUER_FIELDS: &[&str] = &[
    "crlDistributionPoints",
    "issuingCertificateURLs",
    "ocspServers",
    "secretName",
];

/// What a role's certificate must say (trust spec: URI SANs name the role).
pub struct Role {
    /// The TLS Secret components/tls mounts for the role.
    pub secret: &'static str,
    pub uri: &'static str,
    pub usages: &'static [&'static str],
    /// Usages it must not have.
    pub not_usages: &'static [&'static str],
}

pub const SCHEDULER: Role = Role {
    secret: "genfleet-scheduler-tls",
    uri: "spiffe://genfleet/replica/*",
    // Replicas dial each other: both ends.
    usages: &["server auth", "client auth"],
    not_usages: &[],
};

pub const WORKER: Role = Role {
    secret: "genfleet-worker-tls",
    uri: "spiffe://genfleet/worker/*",
    usages: &["client auth"],
    // A worker serves nothing over TLS.
    not_usages: &["server auth"],
};

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn assert_known_fields(v: &Value, known: &[&str], what: &str) {
    let unknown: Vec<&str> = keys(v).into_iter().filter(|k| !known.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "{what}: fields cert-manager.io/v1 does not have: {unknown:?}"
    );
}

/// A Go duration as cert-manager writes them (`2160h`, `30m`).
fn go_duration(v: &Value, what: &str) -> Option<Duration> {
    let text = v.as_str()?;
    let parsed = humantime::parse_duration(text)
        .unwrap_or_else(|e| panic!("{what}: duration {text:?}: {e}"));
    Some(parsed)
}

/// The Certificate's fields are cert-manager.io/v1's, with the required
/// ones present, usages from the enum and renewal inside the lifetime.
fn assert_certificate_fields(cert: &Value, what: &str) {
    assert_eq!(cert["apiVersion"], API_VERSION, "{what}: apiVersion");
    let spec = &cert["spec"];
    assert_known_fields(spec, CERTIFICATE_FIELDS, what);
    assert_known_fields(&spec["privateKey"], PRIVATE_KEY_FIELDS, what);
    assert_known_fields(&spec["issuerRef"], ISSUER_REF_FIELDS, what);
    assert!(spec["secretName"].is_string(), "{what}: no secretName");
    assert!(
        spec["issuerRef"]["name"].is_string(),
        "{what}: no issuerRef.name"
    );
    for usage in strings(&spec["usages"]) {
        assert!(USAGES.contains(&usage), "{what}: no such usage {usage:?}");
    }
    let duration = go_duration(&spec["duration"], what);
    let renew = go_duration(&spec["renewBefore"], what);
    if let (Some(duration), Some(renew)) = (duration, renew) {
        assert!(
            renew < duration,
            "{what}: renewBefore {renew:?} not below duration {duration:?}"
        );
    }
}

/// The Issuer a Certificate names (a namespaced Issuer: it must be among
/// the rendered objects, in the Certificate's namespace).
fn issuer_of<'a>(objects: &'a [Value], cert: &Value, what: &str) -> &'a Value {
    let kind = cert["spec"]["issuerRef"]["kind"]
        .as_str()
        .unwrap_or("Issuer");
    assert_eq!(kind, "Issuer", "{what}: issuerRef.kind");
    let name = cert["spec"]["issuerRef"]["name"].as_str().unwrap_or("");
    let issuer = find(objects, "Issuer", name);
    assert_eq!(
        issuer["apiVersion"], API_VERSION,
        "Issuer {name}: apiVersion"
    );
    assert_eq!(
        issuer["metadata"]["namespace"], cert["metadata"]["namespace"],
        "{what}: Issuer {name} is in another namespace"
    );
    let types: Vec<&str> = keys(&issuer["spec"]);
    assert!(
        types.len() == 1 && ISSUER_TYPES.contains(&types[0]),
        "Issuer {name}: spec must hold one of {ISSUER_TYPES:?}, holds {types:?}"
    );
    assert_known_fields(&issuer["spec"]["ca"], CA_ISSUER_FIELDS, what);
    issuer
}

/// Both roles' Certificates come from one CA Issuer whose CA certificate is
/// self-signed by the bootstrap Issuer.
fn assert_one_ca(objects: &[Value], certs: &[&Value]) {
    let issuers: BTreeSet<&str> = certs
        .iter()
        .filter_map(|c| c["spec"]["issuerRef"]["name"].as_str())
        .collect();
    assert_eq!(
        issuers.len(),
        1,
        "the roles' certificates from one Issuer: {issuers:?}"
    );
    let issuer = issuer_of(objects, certs[0], "the roles' Issuer");
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("the roles' Issuer is not a CA Issuer: {}", issuer["spec"]));
    let ca = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .unwrap_or_else(|| panic!("no Certificate makes the CA Secret {ca_secret}"));
    let what = format!("CA Certificate {}", ca["metadata"]["name"]);
    assert_certificate_fields(ca, &what);
    assert_eq!(ca["spec"]["isCA"], true, "{what}: isCA");
    let root = issuer_of(objects, ca, &what);
    assert!(
        root["spec"]["selfSigned"].is_object(),
        "{what}: not from a selfSigned Issuer"
    );
}

/// The names clients, workers and replicas dial the schedulers by, from
/// the rendered objects: localhost (the REST front calls its own gRPC
/// port there), the host in the workers' --scheduler, the client Service
/// under the cluster domain, and the replicas' names under the headless
/// Service as a wildcard.
fn scheduler_names(objects: &[Value]) -> Vec<String> {
    let sts = find(objects, "StatefulSet", "genfleet-scheduler");
    let what = "StatefulSet genfleet-scheduler";
    let pod = &sts["spec"]["template"]["spec"];
    let c = container(pod, "scheduler", what);
    let namespace = sts["metadata"]["namespace"].as_str().unwrap_or("");
    let domain = env(c, "GENFLEET_CLUSTER_DOMAIN", what)["value"]
        .as_str()
        .unwrap_or("");
    let peers = sts["spec"]["serviceName"].as_str().unwrap_or("");
    let mut names = vec![
        "localhost".to_string(),
        format!("genfleet-scheduler.{namespace}.svc.{domain}"),
        format!("*.{peers}.{namespace}.svc.{domain}"),
    ];
    for ds in objects.iter().filter(|o| o["kind"] == "DaemonSet") {
        let what = format!("DaemonSet {}", ds["metadata"]["name"]);
        let worker = container(&ds["spec"]["template"]["spec"], "worker", &what);
        let address = flag(worker, "--scheduler", &what);
        let host = address
            .split_once("://")
            .map_or(address, |(_, rest)| rest)
            .split([':', '/'])
            .next()
            .unwrap_or("");
        names.push(host.to_string());
    }
    names
}

/// The cert-manager example, rendered with the TLS component and workers:
/// the Certificates make the Secrets the component mounts, carry their
/// role's spiffe URI and usages, come from one CA, and the schedulers'
/// names every address the pods dial.
pub fn assert_cert_manager(objects: &[Value]) {
    let mut certs = Vec::new();
    for role in [&SCHEDULER, &WORKER] {
        let cert = objects
            .iter()
            .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == role.secret)
            .unwrap_or_else(|| panic!("no Certificate makes the Secret {}", role.secret));
        let what = format!("Certificate {}", cert["metadata"]["name"]);
        assert_certificate_fields(cert, &what);
        assert_eq!(
            cert["metadata"]["namespace"], "genfleet",
            "{what}: namespace"
        );
        assert_ne!(cert["spec"]["isCA"], true, "{what}: a leaf, not a CA");
        assert_eq!(
            strings(&cert["spec"]["uris"]),
            [role.uri],
            "{what}: the URI SAN names the role"
        );
        let usages = strings(&cert["spec"]["usages"]);
        for usage in role.usages {
            assert!(usages.contains(usage), "{what}: no {usage:?} in {usages:?}");
        }
        for usage in role.not_usages {
            assert!(!usages.contains(usage), "{what}: {usage:?} in {usages:?}");
        }
        certs.push(cert);
    }
    assert_one_ca(objects, &certs);

    let scheduler = certs[0];
    let dns = strings(&scheduler["spec"]["dnsNames"]);
    for name in scheduler_names(objects) {
        assert!(
            dns.contains(&name.as_str()),
            "Certificate {}: the pods dial {name}, which is not among {dns:?}",
            scheduler["metadata"]["name"]
        );
    }
}

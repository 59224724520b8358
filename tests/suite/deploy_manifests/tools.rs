//! Finding the tools (PATH, then the venv `.ci/install-test-tools.sh`
//! makes), rendering a kustomization and validating what it renders.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::ROOT;
use crate::common::pipe;

/// Kinds defined by CRDs (ours, the Prometheus Operator's, cert-manager's),
/// with their apiVersion: kubernetes-validate ships no schema for them and
/// only warns. GenQueues are checked against their CRD by
/// `.ci/validate-crd-objects.py` instead, cert-manager's objects by
/// `cert_manager.rs`.
const CRD_KINDS: &[(&str, &str)] = &[
    ("GenQueue", "genfleet.dev/v1alpha1"),
    ("ServiceMonitor", "monitoring.coreos.com/v1"),
    ("PodMonitor", "monitoring.coreos.com/v1"),
    ("PrometheusRule", "monitoring.coreos.com/v1"),
    ("Certificate", "cert-manager.io/v1"),
    ("Issuer", "cert-manager.io/v1"),
    ("ClusterIssuer", "cert-manager.io/v1"),
];

/// `name` on PATH, else in the test-tools venv.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    let in_venv = std::iter::once(venv_bin().join(name));
    on_path.chain(in_venv).find(|p| p.is_file())
}

fn venv_bin() -> PathBuf {
    Path::new(ROOT).join("target/test-tools/venv/bin")
}

/// A python that can import jsonschema and yaml: the venv's, else python3.
pub fn find_python() -> Option<PathBuf> {
    [venv_bin().join("python3"), PathBuf::from("python3")]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import jsonschema, yaml, celpy"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// `found`, or: a failed test under GENFLEET_REQUIRE_TOOLS=1, a skip otherwise.
pub fn required(what: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    let fix = "bash .ci/install-test-tools.sh installs it";
    if std::env::var("GENFLEET_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{what} missing and GENFLEET_REQUIRE_TOOLS=1: {fix}");
    }
    eprintln!("skipped: {what} missing ({fix})");
    None
}

pub fn kubectl() -> Option<PathBuf> {
    required("kubectl", find_tool("kubectl"))
}

/// The text of `path`, relative to the repository (or absolute).
pub fn read_repo_file(path: impl AsRef<Path>) -> String {
    let path = Path::new(ROOT).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `kubectl kustomize <dir>`: the YAML an `apply -k` would send.
pub fn render(kubectl: &Path, dir: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed (a missing file, e.g. deploy/base/genqueue-crd.yaml \
         from `genfleet kube crd`, or a bad patch):\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

/// Every document of a YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}"))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Pipes `yaml` into `kubernetes-validate --strict` and fails on any error,
/// and on any object without a schema that is not one of [`CRD_KINDS`]
/// (a misspelled apiVersion or kind shows up only as such a warning).
pub fn validate_strict(validator: &Path, what: &str, yaml: &str) {
    let mut validate = Command::new(validator);
    validate.args(["--strict", "--quiet", "-"]);
    let (status, report, written) = pipe(&mut validate, yaml);
    written.expect("kubernetes-validate reads its input");
    assert!(
        status.success(),
        "{what}: kubernetes-validate --strict refused the rendered objects:\n{report}"
    );
    for line in report
        .lines()
        .filter(|l| l.contains("Couldn't find schema"))
    {
        // "Couldn't find schema for kind K with api version V for ...": both
        // must be known, so that a misspelled version is caught too.
        let known = CRD_KINDS.iter().any(|(kind, version)| {
            line.contains(&format!("kind {kind} with api version {version} "))
        });
        assert!(
            known,
            "{what}: an object has no schema (misspelled apiVersion or kind?): {line}"
        );
    }
}

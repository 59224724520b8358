#!/usr/bin/env bash
# The project's test command: the README's second quick-start command, and
# what CI runs through .ci/run. Installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source .ci/apt-install.sh

# The tests check every video with ffprobe (Debian's ffmpeg package).
apt_install_for ffprobe ffmpeg
export GENFLEET_REQUIRE_FFPROBE=1

# The completion tests check each shell's script with the shell itself.
apt_install_for zsh zsh
apt_install_for fish fish

# kubectl (kustomize), kubernetes-validate, jsonschema and promtool for the
# manifest and monitoring tests; with GENFLEET_REQUIRE_TOOLS=1 a missing one
# fails those tests instead of skipping them.
bash .ci/install-test-tools.sh
export GENFLEET_REQUIRE_TOOLS=1

# Formatting and lints first: cheap, and a warning is a failure here.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The NCCL backend builds without a CUDA toolkit: keep it compiling.
cargo clippy -p genfleet-worker --features nccl --all-targets --locked -- -D warnings

cargo test --workspace --locked

#!/usr/bin/env bash
# The project's test command: the README's second quick-start command, and
# what CI runs through .ci/run. Installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The tests check every video with ffprobe (Debian's ffmpeg package).
if ! command -v ffprobe >/dev/null 2>&1; then
    echo "installing ffmpeg (for ffprobe)..."
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi
export GENFLEET_REQUIRE_FFPROBE=1

# kubectl (kustomize), kubernetes-validate, jsonschema and promtool for the
# manifest and monitoring tests; with GENFLEET_REQUIRE_TOOLS=1 a missing one
# fails those tests instead of skipping them.
bash .ci/install-test-tools.sh
export GENFLEET_REQUIRE_TOOLS=1

cargo test --workspace --locked

#!/usr/bin/env bash
# The plan report looked at in a real browser: renders the report of
# docs/planning.md's example (`genfleet plan ... --out`) and takes a
# screenshot of the whole page in headless Chromium, into
# docs/images/plan-report.png (or the path given). Look at the PNG: the
# recommendation reads first, no label sits on another or on the data, every
# axis says what it is. Commit it when the report changes.
#
#   bash .ci/report-screenshot.sh [OUT.png]
#
# GENFLEET=path/to/genfleet uses that binary; otherwise the debug binary is
# built. Installs Debian's chromium (the browser), imagemagick (to cut the
# screenshot to the page and keep it small) and fonts-dejavu-core (the
# report's first font) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/apt-install.sh

out=${1:-docs/images/plan-report.png}

# apt_install_for installs a package when a command is missing; these two
# are checked another way, so it is handed a command that never exists.
apt_install() { apt_install_for "/nonexistent/$1" "$1"; }

# The first real ImageMagick on PATH (`convert` may be something else).
imagemagick() {
    local c
    for c in magick convert-im6.q16 convert; do
        if "$c" -version 2>/dev/null | grep -q ImageMagick; then
            echo "$c"
            return
        fi
    done
}

apt_install_for chromium chromium
im=$(imagemagick)
if [ -z "$im" ]; then
    apt_install imagemagick
    im=$(imagemagick)
fi
if ! fc-list 2>/dev/null | grep -q "DejaVu Sans"; then
    apt_install fonts-dejavu-core
fi

genfleet=${GENFLEET:-}
if [ -z "$genfleet" ]; then
    cargo build --quiet --bin genfleet
    genfleet=target/debug/genfleet
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
example=docs/examples/plan
# The example misses a target on purpose (docs/planning.md says why), so
# plan exits 1; anything else is a failure.
status=0
"$genfleet" plan --fleet "$example/fleet.yaml" \
    --queues "$example/queues.yaml" \
    --generate "$example/workload.yaml" \
    --profile "$example/profile.yaml" \
    --target 'interactive.p95_e2e<=15s' --target 'standard.p95_wait<=2m' \
    --target 'research.p95_e2e<=2h' \
    --out "$work/report" >"$work/plan.log" 2>&1 || status=$?
if [ "$status" -gt 1 ] || [ ! -s "$work/report/report.html" ]; then
    cat "$work/plan.log" >&2
    echo "genfleet plan failed (exit $status): no report to look at" >&2
    exit 1
fi

# As root (a container), Chromium runs only without its sandbox.
sandbox=()
if [ "$(id -u)" -eq 0 ]; then sandbox=(--no-sandbox); fi
# A window taller than the page; the white below it is cut off after.
chromium --headless "${sandbox[@]}" --disable-gpu --hide-scrollbars \
    --force-device-scale-factor=1 --window-size=1000,8000 \
    --screenshot="$work/raw.png" "file://$work/report/report.html" \
    >"$work/chromium.log" 2>&1 || {
    cat "$work/chromium.log" >&2
    exit 1
}
# Cut to the page with a white margin; 256 colours (not dithered: flat
# fills stay flat) keep text sharp and the file a fraction of the size.
mkdir -p "$(dirname "$out")"
"$im" "$work/raw.png" -trim +repage -bordercolor white -border 20 \
    +dither -colors 256 "png8:$out"
echo "$out: $("$im" "$out" -format '%wx%h' info:), $(($(stat -c %s "$out") / 1024)) KB"

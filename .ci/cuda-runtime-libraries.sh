#!/usr/bin/env bash
# The CUDA runtime libraries of a `cuda` build of genfleet, against the list
# the `cuda` image ships (.ci/cuda-runtime-libraries.txt).
#
#   .ci/cuda-runtime-libraries.sh check BINARY
#       fails, naming them, if BINARY needs a CUDA library the list lacks
#       (the image would not start) or the list has one BINARY does not
#       need (the image carries dead weight: cuBLASLt alone is 500 MB);
#   .ci/cuda-runtime-libraries.sh copy BINARY DIR
#       checks, then copies the listed libraries (their real files, under
#       their sonames) into DIR.
#
# The libraries are those of the CUDA 13.0 wheels .ci/build-gpu.sh installs
# into target/cuda-toolchain. What BINARY needs is what the dynamic loader
# resolves into them (ldd, so libraries the listed ones need count too);
# libcuda.so.1 is the driver's and stays unresolved here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    echo "usage: $0 check BINARY | copy BINARY DIR" >&2
    exit 2
}
[ $# -ge 2 ] || usage
mode=$1 binary=$2
case "$mode" in
    check) [ $# -eq 2 ] || usage ;;
    copy) [ $# -eq 3 ] || usage ;;
    *) usage ;;
esac
[ -f "$binary" ] || { echo "$binary: no such file (build it with .ci/build-gpu.sh)" >&2; exit 1; }

venv=target/cuda-toolchain/venv
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null) || {
    echo "no CUDA toolchain in $venv (run .ci/build-gpu.sh first)" >&2
    exit 1
}
dirs=("$site/nvidia/cu13/lib" "$site/nvidia/nccl/lib")

listed=$(grep -v '^#' .ci/cuda-runtime-libraries.txt | sed '/^\s*$/d' | sort -u)
# Every library the loader finds in the toolkit's directories, by soname.
# (The directories travel joined by ':', which a path here cannot hold.)
path=$(IFS=:; echo "${dirs[*]}")
needed=$(LD_LIBRARY_PATH=$path ldd "$binary" |
    awk -v dirs="$path" '
        BEGIN { n = split(dirs, d, ":") }
        $2 == "=>" { for (i = 1; i <= n; i++) if (index($3, d[i] "/") == 1) print $1 }' |
    sort -u)

missing=$(comm -13 <(echo "$listed") <(echo "$needed"))
extra=$(comm -23 <(echo "$listed") <(echo "$needed"))
one_line() { tr '\n' ' ' <<<"$1"; }
if [ -n "$missing" ] || [ -n "$extra" ]; then
    [ -z "$missing" ] || echo "$binary needs CUDA libraries .ci/cuda-runtime-libraries.txt lacks: $(one_line "$missing")" >&2
    [ -z "$extra" ] || echo ".ci/cuda-runtime-libraries.txt lists libraries $binary does not need: $(one_line "$extra")" >&2
    exit 1
fi
echo "$binary: the CUDA libraries it needs are the listed ones: $(one_line "$needed")"

if [ "$mode" = copy ]; then
    mkdir -p "$3"
    for soname in $needed; do
        found=
        for d in "${dirs[@]}"; do
            if [ -e "$d/$soname" ]; then found=$d/$soname; break; fi
        done
        # -L: the file itself, under its soname (the wheels' names may be links).
        cp -L "$found" "$3/$soname"
    done
    echo "copied into $3: $(du -sh "$3" | cut -f1)"
fi

#!/usr/bin/env bash
# Builds the GPU binary (`genfleet` with the `cuda` feature: candle's CUDA
# kernels, cuBLAS, NCCL) on a machine without a GPU or a CUDA toolkit, so that
# every change keeps the GPU build compiling. Not part of .ci/test.sh: the cold
# build takes about 40 minutes on two busy cores. Run it before resolving
# GPU work; reruns are incremental as long as the target directory is kept.
#
# What it does, each step skipped when already done (idempotent):
#   - installs the CUDA 13.0 toolkit from NVIDIA's PyPI wheels (nvcc, the
#     headers, cudart, nvrtc, cuBLAS, cuRAND, and NCCL) into a venv at
#     target/cuda-toolchain/venv; the wheels unpack into one toolkit-like tree,
#     site-packages/nvidia/cu13/{bin,include,lib,nvvm}. CUDA 13.0 because
#     newer 13.x PTX does not load on the 580 drivers of the GPU machines.
#   - adds the unversioned lib*.so links the linker wants (the wheels carry
#     versioned sonames only) and lib64 -> lib;
#   - builds a link-time stub of the driver library (no wheel ships libcuda):
#     lib/stubs/libcuda.so, soname libcuda.so.1, one empty function for every
#     `cu*` function of the driver bindings of the cudarc version Cargo.lock
#     names (the `pub unsafe fn cu...` lines of its src/driver/sys/mod.rs). It
#     is for the linker only, like the stubs/ directory of NVIDIA's toolkit:
#     the binary records libcuda.so.1 and gets the real driver's library at
#     run time. Never put the stub on a loader path or ship it to a GPU
#     machine (the file is named libcuda.so, not libcuda.so.1, so that a
#     loader looking for libcuda.so.1 never picks it up). If the link ever
#     fails with undefined cu* symbols, `nm -D --undefined-only` of the
#     objects named in the error lists the missing ones;
#   - runs `cargo build --release --locked --features cuda` with the
#     environment candle's build reads (PATH with nvcc, CUDA_ROOT, CUDA_HOME,
#     CUDA_PATH, CUDA_COMPUTE_CAP, CUDAFORGE_THREADS) into its own target
#     directory, so the CPU build in target/ is never invalidated;
#   - prints where the binary is, its size, and the libraries it needs at run
#     time.
#
# Compute capability: candle-kernels (through cudaforge) compiles for exactly
# one CUDA_COMPUTE_CAP per build. 90 (the default) compiles for sm_90a: H100
# and H200 only. 80 compiles PTX for compute_80: A100, and H100/H200 through the
# driver's PTX JIT (slower first load, no sm_90 features). Choose with
#   GENFLEET_CUDA_COMPUTE_CAPS="90 80" bash .ci/build-gpu.sh
# Each capability gets its own target directory: target/gpu for 90,
# target/gpu-cc<N> for the others.
#
# At run time the binary needs libcuda.so.1 (the NVIDIA driver), and
# libcudart.so.13, libcublas.so.13 (with libcublasLt.so.13) and
# libcurand.so.10 from a CUDA 13 installation (a system toolkit, or the same
# wheels in the GPU machine's Python, through LD_LIBRARY_PATH); libnccl.so.2
# and libnvrtc.so.13 too once the code calls them (the linker keeps only the
# libraries whose symbols are used). It binds every symbol at start
# (BIND_NOW): a library older than the one linked here stops it at once. Never copy these libraries with the binary: cuBLASLt
# alone is over 500 MB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

toolchain=target/cuda-toolchain
venv=$toolchain/venv
python=${PYTHON:-python3}
caps=${GENFLEET_CUDA_COMPUTE_CAPS:-90}
caps=${caps//,/ }

# The CUDA 13.0 wheels (they install together; nvidia-cuda-nvcc-cu12 wheels
# hold no nvcc). NCCL 2.30 because cudarc's `nccl` feature binds the 2.30 API.
wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.1.1.3
    nvidia-curand==10.4.0.35
    nvidia-nccl-cu13==2.30.7
)

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv..."
    "$python" -m venv "$venv"
fi
stamp=$toolchain/wheels.installed
if [ "$(cat "$stamp" 2>/dev/null)" != "${wheels[*]}" ]; then
    echo "installing the CUDA 13.0 wheels into $venv..."
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${wheels[@]}"
    echo "${wheels[*]}" > "$stamp"
fi

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda=$site/nvidia/cu13
if [ ! -x "$cuda/bin/nvcc" ]; then
    echo "no nvcc in $cuda/bin after installing the wheels" >&2
    exit 1
fi

# Unversioned names for the linker (-lcudart finds libcudart.so only), and
# lib64 for tools that look there.
[ -e "$cuda/lib64" ] || ln -s lib "$cuda/lib64"
for lib in "$cuda"/lib/lib*.so.*; do
    name=$(basename "$lib")
    base=${name%%.so.*}.so
    # The shortest versioned name (libfoo.so.13 rather than libfoo.so.13.0.96).
    if [ ! -e "$cuda/lib/$base" ]; then
        ln -s "$name" "$cuda/lib/$base"
    fi
done
# NCCL's wheel has its own tree; link it into the toolkit's lib directory,
# which is where cudarc tells the linker to look.
nccl=$(ls "$site"/nvidia/nccl/lib/libnccl.so.* 2>/dev/null | head -n 1)
if [ -z "$nccl" ]; then
    echo "no libnccl.so.* under $site/nvidia/nccl/lib" >&2
    exit 1
fi
ln -sfn "../../nccl/lib/$(basename "$nccl")" "$cuda/lib/libnccl.so"

# The link-time driver stub, from the driver bindings of the locked cudarc.
cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$cudarc_version" ]; then
    echo "Cargo.lock names no cudarc version" >&2
    exit 1
fi
cargo fetch --locked --quiet
bindings=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version"/src/driver/sys/mod.rs 2>/dev/null | head -n 1)
if [ -z "$bindings" ]; then
    echo "cudarc $cudarc_version's sources are not in the cargo registry after cargo fetch" >&2
    exit 1
fi
mkdir -p "$cuda/lib/stubs"
stub_c=$toolchain/libcuda-stub.c
{
    echo "/* Link-time stub of libcuda.so.1, generated by .ci/build-gpu.sh from"
    echo "   cudarc $cudarc_version's driver bindings. Never load it: it does nothing. */"
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | sed 's/^pub unsafe fn //' | sort -u |
        while read -r symbol; do echo "void $symbol(void) {}"; done
} > "$stub_c.new"
if ! cmp -s "$stub_c.new" "$stub_c" || [ ! -e "$cuda/lib/stubs/libcuda.so" ]; then
    mv "$stub_c.new" "$stub_c"
    echo "building the link-time libcuda stub ($(grep -c '^void' "$stub_c") symbols of cudarc $cudarc_version)..."
    ${CC:-cc} -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$stub_c"
else
    rm -f "$stub_c.new"
fi

export PATH=$cuda/bin:$PATH
export CUDA_ROOT=$cuda CUDA_HOME=$cuda CUDA_PATH=$cuda
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
echo "$(nvcc --version | tail -n 2 | head -n 1)"

for cap in $caps; do
    if [ "$cap" = 90 ]; then target_dir=target/gpu; else target_dir=target/gpu-cc$cap; fi
    echo "building genfleet --features cuda for compute capability $cap into $target_dir..."
    start=$(date +%s)
    CUDA_COMPUTE_CAP=$cap CARGO_TARGET_DIR=$target_dir \
        cargo build --release --locked -p genfleet --features cuda
    binary=$target_dir/release/genfleet
    echo
    echo "built $binary (compute capability $cap) in $(( $(date +%s) - start )) s"
    echo "size: $(du -h "$binary" | cut -f1) ($(stat -c %s "$binary") bytes; debug line tables included)"
    if command -v strip >/dev/null 2>&1; then
        stripped=$(mktemp)
        strip -o "$stripped" "$binary"
        echo "stripped: $(du -h "$stripped" | cut -f1)"
        rm -f "$stripped"
    fi
    echo "needs at run time (libcuda.so.1 is the driver's; the CUDA libraries come from the GPU machine's CUDA 13):"
    readelf -d "$binary" | awk '/NEEDED/ { print "  " $NF }' | tr -d '[]'
    echo "ldd on this machine (the CUDA libraries are not on its loader path):"
    ldd "$binary" | sed 's/^\s*/  /'
    # The cuda image ships exactly the libraries of this list.
    bash .ci/cuda-runtime-libraries.sh check "$binary"
done

# GENFLEET_GPU_CARRY=1: also build the DiT step benchmark and pack both
# binaries, stripped and xz-compressed (about 13 MB each; the device tool
# carries at most 64 MiB), into target/gpu-carry/ for .ci/gpu-check.sh.
if [ "${GENFLEET_GPU_CARRY:-0}" = 1 ]; then
    cap=${caps%% *}
    if [ "$cap" = 90 ]; then target_dir=target/gpu; else target_dir=target/gpu-cc$cap; fi
    echo "building the dit_step benchmark with --features cuda into $target_dir..."
    bench=$(CUDA_COMPUTE_CAP=$cap CARGO_TARGET_DIR=$target_dir \
        cargo bench --locked -p genfleet --features cuda --bench dit_step --no-run --message-format=json |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "dit_step" and m.get("executable"):
        print(m["executable"])')
    if [ -z "$bench" ]; then
        echo "cargo did not report the dit_step benchmark binary" >&2
        exit 1
    fi
    mkdir -p target/gpu-carry
    for pair in "genfleet:$target_dir/release/genfleet" "dit_step:$bench"; do
        name=${pair%%:*}
        strip -o "target/gpu-carry/$name" "${pair#*:}"
        xz -6 -T0 -f "target/gpu-carry/$name"
        echo "packed target/gpu-carry/$name.xz: $(du -h "target/gpu-carry/$name.xz" | cut -f1)"
    done
    echo "carry target/gpu-carry to the GPU machine and run: bash .ci/gpu-check.sh"
fi

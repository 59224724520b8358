#!/usr/bin/env bash
# The GPU check: run on a lent GPU machine (no Rust toolchain, no network)
# from the repository root, with the binaries that `.ci/build-gpu.sh` packed
# into target/gpu-carry/ (GENFLEET_GPU_CARRY=1). It writes its log and
# figures under $OUT (default target/gpu-check-out) and ends with the RESULT
# lines. Rehearse it on a CPU machine first:
#
#   GENFLEET_GPU_CHECK_DEVICE=cpu GENFLEET_GPU_CHECK_BIN=target/release/genfleet \
#       GENFLEET_GPU_CHECK_BENCH= bash .ci/gpu-check.sh
#
# What it does, each step timed and logged (a failed step is reported and
# the next one still runs; the exit status says whether any failed):
#   1. `genfleet devices`: what NVML and CUDA see;
#   2. the tiny (f32) and medium (bf16 on a GPU) presets sampled on the CPU
#      and on the GPU for the same request; the GPU latent is compared with
#      the CPU's: tiny within 1e-3 (f32 on both: only the order of the sums
#      differs), medium within 5e-2 (bf16 keeps 8 bits of mantissa, about
#      4e-3 per rounding, over 30 blocks' worth of roundings); both videos
#      are decoded frame by frame (`genfleet video check`);
#   3. the sharded tiny model at tp 2 with both ranks on the one GPU (the
#      thread backend on GPU tensors: NCCL refuses two ranks on one device;
#      NCCL across GPUs needs a machine with two);
#   4. the trained `world` model: its demo request on both (f32: within
#      1e-3), the video decoded, and held-out captions generated on each
#      device and scored from their pixels (`genfleet model eval`);
#   5. a local cluster: a scheduler and a worker offering only its GPUs
#      (--cpu-slots 0); a tiny and a medium job submitted, run on the GPU,
#      and their videos decoded;
#   6. the DiT step benchmark in GPU mode (wan2.1-1.3b at 832x480x33 beside
#      PyTorch on the same GPU when python3 has torch).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# $OUT keeps the log and a few files (the device tool brings back at most
# eight): the world and medium GPU videos, the cluster's medium video, and
# the scheduler's and worker's logs. Everything else stays in $work.
out=${OUT:-target/gpu-check-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/genfleet-gpu-check.XXXXXX")
device=${GENFLEET_GPU_CHECK_DEVICE:-cuda:0}
carry=target/gpu-carry
log=$out/gpu-check.log
exec > >(tee -a "$log") 2>&1

failed=()
results=()
step() {
    local name=$1
    shift
    local start=$(date +%s%N)
    echo
    echo "== $name: $*"
    if "$@"; then
        echo "-- $name: ok ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
    else
        echo "-- $name: FAILED (status $?)"
        failed+=("$name")
    fi
}

# The binaries: carried compressed (the carry limit is 64 MiB), or given.
unpack() {
    local name=$1
    if [ -x "$carry/$name" ]; then
        echo "$carry/$name"
    elif [ -f "$carry/$name.xz" ]; then
        if command -v xz >/dev/null; then
            xz -dc "$carry/$name.xz" > "$work/$name"
        else
            python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
                "$carry/$name.xz" "$work/$name"
        fi
        chmod +x "$work/$name"
        echo "$work/$name"
    fi
}
genfleet=${GENFLEET_GPU_CHECK_BIN:-$(unpack genfleet)}
bench=${GENFLEET_GPU_CHECK_BENCH-$(unpack dit_step)}
if [ -z "$genfleet" ] || [ ! -x "$genfleet" ]; then
    echo "no genfleet binary: run GENFLEET_GPU_CARRY=1 bash .ci/build-gpu.sh first, or set GENFLEET_GPU_CHECK_BIN" >&2
    exit 2
fi

# The CUDA 13 libraries the binary links (libcudart, cuBLAS, cuRAND, NCCL):
# from a system toolkit, or from the wheels in this machine's Python
# (PyTorch's CUDA 13 build brings them).
if [ "$device" != cpu ]; then
    wheel_libs=$(python3 - <<'EOF' 2>/dev/null
import os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = []
for base in roots:
    nvidia = os.path.join(base, "nvidia")
    for path, _, files in os.walk(nvidia):
        if os.path.basename(path) == "lib" and any(".so" in f for f in files):
            dirs.append(path)
    torch_lib = os.path.join(base, "torch", "lib")
    if os.path.isdir(torch_lib):
        dirs.append(torch_lib)
print(":".join(dirs))
EOF
)
    export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}${wheel_libs:-}:/usr/local/cuda/lib64
    echo "libraries the binary needs, as this machine resolves them:"
    ldd "$genfleet" | grep -E "cuda|cublas|curand|nccl|not found" | sed 's/^\s*/  /'
fi

echo "genfleet GPU check on $(hostname), device $device, $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

step devices "$genfleet" devices

models=$work/models
step init "$genfleet" model init --dir "$models" --preset tiny
step init-medium "$genfleet" model init --dir "$models" --preset medium

# One request per preset, on the CPU and on the device.
request=(--size 256x256 --frames 17 --steps 4 --seed 7 --prompt "a paper boat drifting on a pond")
# sample REQUEST-ARRAY-NAME DEVICE NAME [more flags]: one request on one
# device, its latent, video and report under $work/NAME.
sample() {
    local -n args=$1
    local on=$2 name=$3
    shift 3
    "$genfleet" model sample --dir "$models" --device "$on" "${args[@]}" \
        --latent "$work/$name.safetensors" --video "$work/$name.mp4" "$@" | tee "$work/$name.txt"
}
for model in tiny medium; do
    preset_request=(--model "$model" "${request[@]}")
    step "$model-cpu" sample preset_request cpu "$model-cpu"
    step "$model-gpu" sample preset_request "$device" "$model-gpu" --against "$work/$model-cpu.safetensors"
    step "$model-gpu-video" "$genfleet" video check "$work/$model-gpu.mp4" --frames 17 --size 256x256 --fps 8
    diff=$(grep -oE '[0-9.e+-]+ of the largest value' "$work/$model-gpu.txt" | cut -d' ' -f1)
    step_s=$(grep -oE 'median [0-9.]+ s' "$work/$model-gpu.txt" | grep -oE '[0-9.]+')
    [ -n "$diff" ] && results+=("RESULT gpu_check_${model}_latent_rel_diff $diff ratio")
    [ -n "$step_s" ] && results+=("RESULT gpu_check_${model}_step_256x256x17 $step_s s")
done
cp "$work/medium-gpu.mp4" "$out/" 2>/dev/null
tiny_request=(--model tiny "${request[@]}")
step tiny-tp2-one-gpu sample tiny_request "$device" tiny-tp2 --tp 2 --against "$work/tiny-cpu.safetensors"

# The trained `world` model: its demo request on the CPU and the GPU (f32:
# within 1e-3), its video decoded frame by frame, then held-out captions
# generated on the GPU and scored from their pixels (colour, background,
# motion, shape, size), beside the same captions generated on the CPU.
world_request=(--model world --steps 20 --seed 7 --prompt "big golden box moving left, gray backdrop")
step init-world "$genfleet" model init --dir "$models" --preset world
step world-cpu sample world_request cpu world-cpu
step world-gpu sample world_request "$device" world-gpu --against "$work/world-cpu.safetensors"
step world-gpu-video "$genfleet" video check "$work/world-gpu.mp4" --frames 17 --size 64x64 --fps 8
cp "$work/world-gpu.mp4" "$out/" 2>/dev/null
diff=$(grep -oE '[0-9.e+-]+ of the largest value' "$work/world-gpu.txt" | cut -d' ' -f1)
[ -n "$diff" ] && results+=("RESULT gpu_check_world_latent_rel_diff $diff ratio")
world_eval() {
    local on=$1
    "$genfleet" model eval --dir "$models" --device "$on" --captions "${GENFLEET_GPU_CHECK_CAPTIONS:-50}" \
        | tee "$work/eval-$on.txt"
}
step world-eval-cpu world_eval cpu
step world-eval-gpu world_eval "$device"
for pair in "gpu:$device" cpu:cpu; do
    while read -r name value unit; do
        results+=("RESULT gpu_check_world_${name#eval_}_${pair%%:*} $value $unit")
    done < <(grep '^RESULT' "$work/eval-${pair#*:}.txt" | cut -d' ' -f2-)
done

# A local cluster whose worker offers only the GPU (the CPU too in a rehearsal).
slots=0
[ "$device" = cpu ] && slots=1
port=$((17000 + RANDOM % 2000))
scheduler=http://127.0.0.1:$port
"$genfleet" scheduler --data-dir "$work/scheduler" --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 \
    > "$out/scheduler.log" 2>&1 &
scheduler_pid=$!
"$genfleet" worker --scheduler "$scheduler" --node gpu-check --models "$models" --artifacts "$work/artifacts" \
    --cpu-slots "$slots" --metrics-listen 127.0.0.1:0 > "$out/worker.log" 2>&1 &
worker_pid=$!
trap 'kill $worker_pid $scheduler_pid 2>/dev/null' EXIT
registered() {
    for _ in $(seq 1 120); do
        if "$genfleet" node list --scheduler "$scheduler" 2>/dev/null | grep -q gpu-check; then
            "$genfleet" node list --scheduler "$scheduler"
            return 0
        fi
        kill -0 $worker_pid 2>/dev/null || { tail -5 "$out/worker.log"; return 1; }
        sleep 0.5
    done
    return 1
}
step worker-registers registered
job() {
    local model=$1
    local text
    text=$(timeout "${GENFLEET_GPU_CHECK_JOB_TIMEOUT:-600}" "$genfleet" submit --scheduler "$scheduler" --model "$model" --size 256x256 --frames 17 \
        --steps 8 --prompt "a lighthouse in a storm" --watch) || return 1
    echo "$text" | tail -12
    echo "$text" | grep -q "state:     completed" || return 1
    local video
    video=$(echo "$text" | grep -oE '/[^ ]*/video\.mp4' | tail -1)
    [ "$model" = medium ] && cp "$video" "$out/cluster-$model.mp4"
    "$genfleet" video check "$video" --frames 17 --size 256x256 --fps 8
}
step cluster-tiny job tiny
step cluster-medium job medium
kill $worker_pid $scheduler_pid 2>/dev/null
wait $worker_pid $scheduler_pid 2>/dev/null
trap - EXIT

if [ -n "$bench" ] && [ -x "$bench" ]; then
    # The benchmark in GPU mode only (the CPU cases run on CPU machines).
    bench_gpu() {
        GENFLEET_BENCH_DEVICE=cuda GENFLEET_TORCH_PYTHON="${GENFLEET_TORCH_PYTHON:-python3}" \
            GENFLEET_BENCH_STEPS="${GENFLEET_BENCH_STEPS:-5}" "$bench" --bench | tee "$work/bench.txt"
    }
    # What NVML reports while the benchmark runs: peak power, utilisation,
    # memory and SM clock, sampled every half second.
    sampler=
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=power.draw,utilization.gpu,memory.used,clocks.sm,temperature.gpu \
            --format=csv,noheader,nounits -lms 500 > "$work/nvml.csv" 2>/dev/null &
        sampler=$!
    fi
    step bench bench_gpu
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
        awk -F', *' 'NF >= 5 { n++; if ($1 > p) p = $1; if ($2 > u) u = $2; if ($3 > m) m = $3; if ($4 > c) c = $4; if ($5 > t) t = $5 }
            END { if (n) printf "NVML during the benchmark (%d samples): peak %.0f W, %d%% utilisation, %d MiB used, SM %d MHz, %d C\n", n, p, u, m, c, t }' \
            "$work/nvml.csv"
    fi
    step devices-after "$genfleet" devices
    while read -r line; do results+=("$line"); done < <(grep '^RESULT' "$work/bench.txt")
else
    echo "no benchmark binary: the GPU benchmark is skipped"
fi

rm -rf "$work"
echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}"
fi
for line in "${results[@]}"; do
    echo "$line"
done
[ ${#failed[@]} -eq 0 ]

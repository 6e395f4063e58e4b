#!/usr/bin/env bash
# The GPU benchmarks of BENCHMARKS.md in one call, on a machine with an NVIDIA GPU, PyTorch
# and a Vulkan driver: the whole `wgloss bench` catalogue (every family, f32 and bf16) and
# benches/pytorch_reference.py's losses at the same sizes on CUDA, as JSON lines and one
# markdown table in OUTDIR.
#
#   bash benches/device/run.sh OUTDIR [options]
#
#   --wgloss PATH     the wgloss binary (default: target/release/wgloss; built with cargo when
#                     missing and cargo is there). Built here for x86-64 Linux with
#                     `cargo build --release --features cli`, it runs on such a machine as is.
#   --n N             elements of the elementwise losses (default 67108864 = 2^26)
#   --shape RxC       class-dimension shapes (repeatable; default 4096x32768)
#   --reps R          timed repetitions (default 15)
#   --torch-device D  PyTorch's device (default cuda; cpu for a dry run anywhere)
#   --python PY       the Python that holds PyTorch (default python3)
#
# OUTDIR receives: info.txt (`wgloss info`: the adapter), wgloss.jsonl, pytorch.jsonl,
# table.md (benches/device/table.py over both), and log.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:?usage: bash benches/device/run.sh OUTDIR [options]}
shift
wgloss=target/release/wgloss
n=67108864
shapes=()
reps=15
torch_device=cuda
python=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --wgloss) wgloss=$2; shift 2 ;;
        --n) n=$2; shift 2 ;;
        --shape) shapes+=("$2"); shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --torch-device) torch_device=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ ${#shapes[@]} -gt 0 ] || shapes=(4096x32768)
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1

# A Vulkan loader and the NVIDIA driver's ICD: carried loaders (.gl/*.deb, see the device
# tool's notes) are unpacked when the system has none; the driver's manifest is named when no
# ICD is installed where the loader looks.
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
    if ls .gl/*.deb >/dev/null 2>&1; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        echo "run.sh: no Vulkan loader (libvulkan.so.1) and no .gl/*.deb to unpack" >&2
    fi
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ] &&
    ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=$nvidia_icd
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

if [ ! -x "$wgloss" ]; then
    command -v cargo >/dev/null || { echo "run.sh: no $wgloss and no cargo to build it" >&2; exit 1; }
    cargo build --release --features cli
fi

date -u +"%Y-%m-%d %H:%M UTC" > "$out/info.txt"
"$wgloss" info >> "$out/info.txt"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader >> "$out/info.txt" || true
cat "$out/info.txt"

shape_flags=()
for s in "${shapes[@]}"; do shape_flags+=(--shape "$s"); done

echo "== wgloss bench: every loss, f32 and bf16"
"$wgloss" bench --backend gpu --json --dtype f32 --dtype bf16 --n "$n" "${shape_flags[@]}" \
    --reps "$reps" | tee "$out/wgloss.jsonl"

echo "== PyTorch on $torch_device, the same losses and sizes"
PYTHONUNBUFFERED=1 "$python" benches/pytorch_reference.py --all --device "$torch_device" \
    --dtype float32 --dtype bfloat16 --n "$n" "${shape_flags[@]}" --reps "$reps" |
    tee "$out/pytorch.jsonl"

"$python" benches/device/table.py "$out/wgloss.jsonl" "$out/pytorch.jsonl" |
    tee "$out/table.md"

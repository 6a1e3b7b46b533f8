#!/usr/bin/env bash
# Convert hrnet_om's ONNX into an OM for an Ascend chip with ATC (CANN toolkit):
#   scripts/atc_hrnet.sh SOC [GEARS]      e.g. scripts/atc_hrnet.sh Ascend310P3
# SOC: the chip (`npu-smi info` names it: Ascend310P3 for a 310P card). GEARS: ATC's
# --dynamic_dims for the input's H,W ("512,512;512,576;..."); default `python -m hrnet.gears`
# (512..1024 in both orientations). ONNX (default model_repository/hrnet_om/1/model.onnx) is
# converted into model.om beside it; ATC runs in a scratch folder there and the OM replaces
# model.om only when it succeeded, so a failed run leaves nothing half-written.
set -euo pipefail

SOC="${1:-}"
GEARS="${2:-${GEARS:-}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="${REPO:-model_repository}"
case "$REPO_DIR" in /*) ;; *) REPO_DIR="$ROOT/$REPO_DIR" ;; esac
ONNX="${ONNX:-$REPO_DIR/hrnet_om/1/model.onnx}"
PYTHON="${PYTHON:-python3}"

if [ -z "$SOC" ]; then
    echo "usage: $0 SOC [GEARS]   (SOC: the chip as npu-smi info names it, e.g. Ascend310P3)" >&2
    exit 2
fi
if ! command -v atc >/dev/null 2>&1; then
    echo "error: atc (Ascend Tensor Compiler) is not on PATH: install the CANN toolkit and run" >&2
    echo "       source /usr/local/Ascend/ascend-toolkit/set_env.sh" >&2
    exit 2
fi
if [ ! -f "$ONNX" ]; then
    echo "error: $ONNX not found: build it first (make model)" >&2
    exit 2
fi
if [ -z "$GEARS" ]; then
    GEARS="$(cd "$ROOT" && "$PYTHON" -m hrnet.gears)"
fi

ONNX="$(cd "$(dirname "$ONNX")" && pwd)/$(basename "$ONNX")"
DIR="$(dirname "$ONNX")"
SCRATCH="$(mktemp -d "$DIR/.atc.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
# In the scratch folder: ATC also leaves fusion_result.json and kernel_meta/ where it runs.
(cd "$SCRATCH" && atc --framework=5 --model="$ONNX" --output="$SCRATCH/model" --input_format=NCHW \
    --input_shape="input:1,3,-1,-1" --dynamic_dims="$GEARS" --soc_version="$SOC" --log=error)
# Some ATC versions append the platform: model_linux_x86_64.om.
shopt -s nullglob
OMS=("$SCRATCH"/model*.om)
if [ "${#OMS[@]}" -ne 1 ]; then
    echo "error: ATC reported success but wrote ${#OMS[@]} OM files in $SCRATCH" >&2
    exit 1
fi
mv -f "${OMS[0]}" "$DIR/model.om"
echo "wrote $DIR/model.om ($SOC, $(tr -cd ';' <<<"$GEARS" | wc -c | awk '{print $1 + 1}') gears)"

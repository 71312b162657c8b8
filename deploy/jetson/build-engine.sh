#!/usr/bin/env bash
# Build a TensorRT engine from the shipped ONNX model with trtexec (JetPack ships it in /usr/src/tensorrt/bin).
#   deploy/jetson/build-engine.sh MODEL.onnx [fp16|int8 CALIB_CACHE]
set -euo pipefail
model=${1:?usage: build-engine.sh MODEL.onnx [fp16|int8 CALIB_CACHE]}
mode=${2:-fp16}
trtexec=$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)
if [ ! -x "$trtexec" ]; then
  echo "trtexec not found: install TensorRT (JetPack) or use the TensorRT provider of onnxruntime-gpu" >&2
  exit 2
fi
engine="${model%.onnx}.${mode}.engine"
args=(--onnx="$model" --saveEngine="$engine")
case "$mode" in
  fp16) args+=(--fp16) ;;
  int8) args+=(--int8 --calib="${3:?int8 needs a calibration cache}") ;;
  *) echo "unknown mode $mode (fp16 or int8)" >&2; exit 2 ;;
esac
"$trtexec" "${args[@]}"
echo "wrote $engine"

#!/usr/bin/env bash
# Build a TensorRT engine from the shipped ONNX model with trtexec (JetPack ships it in /usr/src/tensorrt/bin).
#   deploy/jetson/build-engine.sh MODEL.onnx [fp16|int8 CALIB_CACHE]
# Writes MODEL.<mode>.engine into $SITESENTRY_ENGINE_DIR (default: beside the model); does nothing while
# that engine is newer than the model, so it can run at every boot (sitesentry-engine.service, compose).
set -euo pipefail
model=${1:?usage: build-engine.sh MODEL.onnx [fp16|int8 CALIB_CACHE]}
mode=${2:-fp16}
trtexec=$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)
if [ ! -x "$trtexec" ]; then
  echo "trtexec not found: install TensorRT (JetPack) or use the TensorRT provider of onnxruntime-gpu" >&2
  exit 2
fi
if [ ! -f "$model" ]; then
  echo "$model: model file not found" >&2
  exit 2
fi
out_dir=${SITESENTRY_ENGINE_DIR:-$(dirname "$model")}
mkdir -p "$out_dir"
name=$(basename "$model" .onnx)
engine="$out_dir/$name.$mode.engine"
if [ -s "$engine" ] && [ "$engine" -nt "$model" ]; then
  echo "up to date: $engine"
  exit 0
fi
args=(--onnx="$model" --saveEngine="$engine.partial")
case "$mode" in
  fp16) args+=(--fp16) ;;
  int8) args+=(--int8 --calib="${3:?int8 needs a calibration cache}") ;;
  *) echo "unknown mode $mode (fp16 or int8)" >&2; exit 2 ;;
esac
"$trtexec" "${args[@]}"
mv "$engine.partial" "$engine"  # a build cut short never leaves an engine that looks current
echo "wrote $engine"

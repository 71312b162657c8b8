#!/usr/bin/env bash
# Build a TensorRT engine from an ONNX model with trtexec (JetPack ships it in /usr/src/tensorrt/bin).
#   deploy/jetson/build-engine.sh MODEL.onnx [fp16|int8]
# int8 needs an explicitly quantized (Q/DQ) ONNX, as TensorRT 10 builds INT8: the *-qdq*.onnx that
# `sitesentry export --format engine --precision int8 --calibration DIR --out DIR` leaves in its --out folder.
# Writes MODEL.<mode>.engine into $SITESENTRY_ENGINE_DIR (default: beside the model); does nothing while
# that engine is newer than the model, so it can run at every boot (sitesentry-engine.service, compose).
set -euo pipefail
model=${1:?usage: build-engine.sh MODEL.onnx [fp16|int8]}
mode=${2:-fp16}
if [ ! -f "$model" ]; then
  echo "$model: model file not found" >&2
  exit 2
fi
case "$mode" in
  fp16) flags=(--fp16) ;;
  int8)
    # Q/DQ models name their QuantizeLinear nodes in the protobuf as plain text.
    if ! grep -q QuantizeLinear "$model"; then
      echo "$model: no Q/DQ (QuantizeLinear) nodes: int8 needs an explicitly quantized ONNX, the *-qdq*.onnx" \
        "that \`sitesentry export --format engine --precision int8 --calibration DIR --out DIR\` writes" >&2
      exit 2
    fi
    flags=(--int8 --fp16) ;;  # layers without Q/DQ (the decode tail) run in fp16
  *) echo "unknown mode $mode (fp16 or int8)" >&2; exit 2 ;;
esac
trtexec=$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)
if [ ! -x "$trtexec" ]; then
  echo "trtexec not found: install TensorRT (JetPack) or use the TensorRT provider of onnxruntime-gpu" >&2
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
"$trtexec" --onnx="$model" --saveEngine="$engine.partial" "${flags[@]}"
mv "$engine.partial" "$engine"  # a build cut short never leaves an engine that looks current
echo "wrote $engine"

#!/usr/bin/env bash
# One command for a short GPU window (an H200 lent for minutes, or a Jetson): installs what it needs from
# wheels, builds the FP16 TensorRT engine, checks parity with ONNX Runtime on real photos, evaluates FP32,
# FP16 and INT8 mAP50 on the valid split, and benchmarks 1/4/8/16 cameras end to end against TensorRT's
# own timing of the same engine. Every step has a timeout and the whole run a budget (default 450 s);
# docs/benchmarks/gpu-check.json is written after every step, also when steps fail or are skipped.
#
#   bash scripts/gpu-check.sh                       # uses .venv/bin/python, else python3
#
# Environment (all optional):
#   GPU_CHECK_PYTHON     interpreter to use (default .venv/bin/python if present, else python3)
#   GPU_CHECK_WHEELS     folder of wheels installed offline first (default .whl): tensorrt, cuda-python,
#                        onnxruntime-gpu and any runtime dependency the interpreter lacks
#   GPU_CHECK_NO_INSTALL 1: never run pip (the packages are there, or the run should record their absence)
#   GPU_CHECK_OUT        the JSON report (default docs/benchmarks/gpu-check.json)
#   GPU_CHECK_WORK       scratch folder: imported dataset, calibration set, engine cache (default
#                        /tmp/sitesentry-gpu-check)
#   GPU_CHECK_BUDGET_S   seconds for the whole run (default 450: under 8 minutes with the install)
#   GPU_CHECK_CPU_STEPS  1: without a GPU, still run the CPU steps (dataset import, FP32 eval) to prove them
#   GPU_CHECK_FORCE      1: run every step even without a GPU (each GPU step then fails with its reason)
#   SITESENTRY_SHARED    the shared data folder (default ../shared): datasets/construction-site-safety and
#                        videos/hardhat-workers.mp4 (else samples/vtest.mp4)
set -uo pipefail
cd "$(dirname "$0")/.."
python=${GPU_CHECK_PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$python" scripts/gpu-check.py "$@"

#!/usr/bin/env bash
# The edge runtime (contract/, edge/) must run on Python 3.10 (JetPack 6) without torch or ultralytics: install
# the package alone (no train, dashboard or openvino extra) into .venv310 and run every edge test there, so a
# 3.11-only construct or a training import in the runtime fails CI. The dashboard and training tests need
# 3.11 and their extras. The fault suite (tests/mqtt/test_faults.py: 45 s of timed crash scenarios, flaky
# on a loaded 2-core box) runs in the 3.11 suite only; the delivery tests here cover the same outbox paths.
#   bash scripts/test-py310.sh [pytest args]    (PYTHON310=/path/to/python3.10 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

is_310() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }
python=""
for candidate in "${PYTHON310:-}" "$HOME/.pyenv/versions/3.10.13/bin/python" "$(command -v python3.10 || true)"; do
  if is_310 "$candidate"; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  echo "error: no Python 3.10 found (tried \$PYTHON310, ~/.pyenv/versions/3.10.13/bin/python, python3.10)" >&2
  exit 1
fi

[ -x .venv310/bin/python ] || "$python" -m venv .venv310
# -qq: this machine's pip config names a local index folder that may be absent, and warns for every package
.venv310/bin/python -m pip install -qq --upgrade pip
.venv310/bin/python -m pip install -qq -e . pytest pytest-timeout hypothesis jsonschema httpx
for module in torch ultralytics; do
  if .venv310/bin/python -c "import $module" 2>/dev/null; then
    echo "error: $module is installed in .venv310: the edge runtime must not depend on it" >&2
    exit 1
  fi
done

.venv310/bin/python -m pytest -q -ra -p no:cacheprovider -m "not train" \
  --ignore=tests/dashboard --ignore=tests/training --ignore=tests/mqtt/test_faults.py "$@" tests

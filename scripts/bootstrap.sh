#!/usr/bin/env bash
# Create .venv (or the folder $VENV names) and install Curator into it. `--dev` adds test tools and
# Debian's Chromium. Idempotent: a second run only checks. Usage: [VENV=dir] bash scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1
py=${PYTHON:-python3}
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
req=requirements.txt; [ $dev = 1 ] && req=requirements-dev.txt
"${pip[@]}" install -r "$req"
# insightface depends on opencv-python; its cv2 would shadow the contrib build. Remove every other
# OpenCV wheel, then reinstall contrib so its files are the ones on disk.
if ! "$venv/bin/python" -c "import cv2, sys; sys.exit(0 if hasattr(cv2, 'quality') and hasattr(cv2, 'img_hash') else 1)" 2>/dev/null \
   || "$venv/bin/python" -m pip show -q opencv-python opencv-python-headless >/dev/null 2>&1; then
  "${pip[@]}" uninstall -y opencv-python opencv-python-headless opencv-contrib-python >/dev/null 2>&1 || true
  "${pip[@]}" install --force-reinstall --no-deps "$(grep -E '^opencv-contrib-python-headless' requirements.txt)"
fi
"$venv/bin/python" -c "import cv2; assert hasattr(cv2, 'quality'), 'cv2 is not the contrib build'"
if [ $dev = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: install Debian's chromium for the browser tests (apt-get install chromium)" >&2
  fi
fi

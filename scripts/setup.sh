#!/usr/bin/env bash
# Creates/updates the project environment in .venv: pinned ROS 2 Jazzy wheels + inference/test packages,
# the rosidl build of msg/ installed into the venv prefix, and the project's Python packages.
# Idempotent: each step runs only when its inputs changed (stamps in .venv/.stamps).
# PYTHON=... picks the interpreter (3.11 default; 3.12 = Ubuntu 24.04 / ROS 2 Jazzy's own Python),
# VENV=... another environment folder, e.g.
#   PYTHON=/root/.pyenv/versions/3.12.1/bin/python3.12 VENV=/tmp/venv312 bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="${VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON_BIN="${PYTHON:-python3.11}"
# the default venv keeps its CMake build in build/interfaces (as before); others next to their venv
if [ "$VENV" = "$ROOT/.venv" ]; then IFACE_BUILD="$ROOT/build/interfaces"; else IFACE_BUILD="$VENV/.build-interfaces"; fi
STAMPS="$VENV/.stamps"
t0=$(date +%s)

log() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
# pip prints one harmless warning per unreachable local index entry on these machines: keep the log readable
quiet_pip() { "$VENV/bin/pip" "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }; return "${PIPESTATUS[0]}"; }

command -v "$PYTHON_BIN" >/dev/null || { echo "setup: $PYTHON_BIN not found (Python 3.11 or 3.12 is required; set PYTHON=...)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "setup: cmake not found (apt-get install cmake g++)" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating $VENV"
  rm -rf "$VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
mkdir -p "$STAMPS"
# colcon crawls the workspace: never let it pick up packages inside an environment folder
touch "$VENV/COLCON_IGNORE"

req_hash=$(hash_of requirements/*.txt)
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned packages (requirements/*.txt)"
  quiet_pip install -q --disable-pip-version-check -r requirements/ros-jazzy.txt -r requirements/runtime.txt -r requirements/dev.txt
  sh scripts/fix_ros_wheels.sh "$VENV"
  echo "$req_hash" > "$STAMPS/requirements"
  rm -f "$STAMPS/interfaces"
fi

iface_hash=$(hash_of CMakeLists.txt package.xml msg/*.msg)
if [ "$(cat "$STAMPS/interfaces" 2>/dev/null)" != "$iface_hash" ]; then
  log "building interfaces (msg/) with rosidl into the venv prefix"
  LOG="$IFACE_BUILD.log"
  rm -rf "$IFACE_BUILD"; mkdir -p "$(dirname "$IFACE_BUILD")"
  cmake -S . -B "$IFACE_BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DHAND_RECON_PYTHON_VIA_PIP=ON -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
    -DCMAKE_INSTALL_PREFIX="$VENV" > "$LOG" 2>&1 || { cat "$LOG"; exit 1; }
  cmake --build "$IFACE_BUILD" -j"$(nproc)" >> "$LOG" 2>&1 || { tail -50 "$LOG"; exit 1; }
  cmake --install "$IFACE_BUILD" >> "$LOG" 2>&1 || { tail -50 "$LOG"; exit 1; }
  echo "$iface_hash" > "$STAMPS/interfaces"
  rm -f "$STAMPS/python"
fi

src_hash=$( (find hand_recon_ros hand_recon_train launch config models -type f ! -path '*/__pycache__/*' -print0 \
  | sort -z | xargs -0 sha256sum; sha256sum setup.py) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMPS/python" 2>/dev/null)" != "$src_hash" ]; then
  log "installing the project's Python packages"
  # Not editable: the generated message module shares the hand_recon_ros folder in site-packages.
  quiet_pip install -q --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall .
  rm -rf build/lib build/bdist.* ./*.egg-info
  echo "$src_hash" > "$STAMPS/python"
fi

"$VENV/bin/python" -c 'import hand_recon_ros.msg, rclpy, torch, smplx' \
  || { echo "setup: the environment does not import; remove .venv and run again" >&2; exit 1; }
log "environment ready in $(( $(date +%s) - t0 )) s: $VENV"

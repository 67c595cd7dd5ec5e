#!/usr/bin/env bash
# Creates .venv-teacher: MediaPipe Hands 0.10.21 (the keypoint teacher of hand_recon_train.teacher) in its own
# environment, since it needs numpy < 2. Idempotent. Only labelling and the real-image benchmark's MediaPipe
# column need it; tests that need it skip with a reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$PWD/.venv-teacher"
PYTHON_BIN="${PYTHON:-python3.11}"
STAMP="$VENV/.stamp"
want=$(cat requirements/teacher.txt | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  echo "[setup_teacher] ready: $VENV"; exit 0
fi
t0=$(date +%s)
rm -rf "$VENV"
"$PYTHON_BIN" -m venv "$VENV"
pip_q() { "$VENV/bin/pip" -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }; return "${PIPESTATUS[0]}"; }
pip_q install -r requirements/teacher.txt
pip_q install --no-deps mediapipe==0.10.21
"$VENV/bin/python" -c 'import mediapipe as mp; mp.solutions.hands.Hands(static_image_mode=True).close()' \
  || { echo "setup_teacher: mediapipe does not start" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "[setup_teacher] ready in $(( $(date +%s) - t0 )) s: $VENV"

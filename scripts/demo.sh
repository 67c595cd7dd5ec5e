#!/usr/bin/env bash
# The main job on its embedded default: the node on bundled synthetic frames over real DDS (no camera,
# no MANO files, no GPU needed). Outputs: out/demo/{report.md,overlays/,bag/,node.log}.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
exec .venv/bin/hand_recon_demo "$@"

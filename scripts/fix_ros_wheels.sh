#!/bin/sh
# sh scripts/fix_ros_wheels.sh VENV
# The PyPI ROS wheels carry the wheel build host's /opt/python/... include dirs in a few exported CMake
# files; point them at this venv's Python and NumPy headers. Idempotent.
set -eu
VENV=${1:?usage: sh fix_ros_wheels.sh VENV}
PY="$VENV/bin/python"
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
grep -rl --include='*.cmake' '/opt/python/cp3' "$VENV/share" 2>/dev/null | while read -r f; do
  sed -i -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$PYINC#g" \
         -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$NPINC#g" "$f"
done

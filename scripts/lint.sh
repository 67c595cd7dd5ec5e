#!/usr/bin/env bash
# The lint and type gate (config in pyproject.toml): ruff over the Python sources, mypy over the typed core.
# scripts/test.sh runs it first, so a lint failure fails `make test` (and CI). Needs the venv (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
echo "[lint] ruff check"
"$py" -m ruff check hand_recon_ros hand_recon_train tools benchmarks test examples
echo "[lint] ruff format --check"
"$py" -m ruff format --check hand_recon_ros hand_recon_train tools benchmarks test examples
echo "[lint] mypy (pyproject.toml [tool.mypy] files)"
"$py" -m mypy

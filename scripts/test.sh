#!/usr/bin/env bash
# Runs the lint/type gate (scripts/lint.sh), then the whole test suite in the project venv (after scripts/setup.sh).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/lint.sh             # a lint or type error fails the run before any test starts
workers=${TEST_WORKERS:-2}
set +e
.venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a failure for this project, not a pass.
if [ "$rc" -eq 5 ]; then echo "test.sh: no tests were collected" >&2; exit 1; fi
exit "$rc"

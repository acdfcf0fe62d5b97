#!/usr/bin/env bash
# The whole test suite, with its own set-up: lint, types, then every test against real engines.
# Extra arguments go to pytest (e.g. `bash maint-scripts/test.sh -k onboarding`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash maint-scripts/setup.sh
echo "==> ruff" >&2
.venv/bin/ruff check dms tests bench
echo "==> mypy" >&2
.venv/bin/mypy
echo "==> pytest" >&2
exec .venv/bin/pytest "$@"

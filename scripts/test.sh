#!/usr/bin/env bash
# Installs everything (scripts/setup.sh) and runs the test suite on CPU with tiny models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"

#!/usr/bin/env bash
# Installs everything, then runs the three jobs on their built-in defaults:
#   render the 25 default scenes -> runs/render
#   probe the tiny random-weight klein (dry run) -> runs/probe
#   evaluate the tiny klein on the renders: generate, score, ablate, link, report -> runs/evaluate
# With real weights, replace `--model tiny` by a hub id or snapshot folder (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m render --out runs/render
python -m probe run --model tiny --out runs/probe
# the causal test at its smallest (k = 8, two random draws) keeps the dry run to a few minutes on 2 cores
python -m evaluate all --model tiny --data runs/render --probe runs/probe --out runs/evaluate --k 8 --n-random 2
echo "done: open runs/probe/report.md and runs/evaluate/report.md (tiny model: random weights, not findings)"

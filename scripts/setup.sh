#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs ray-plantain with its pinned dependencies. Idempotent.
# torch is installed first as the CPU wheel `torch==2.13.0`; set TORCH_SPEC to choose another build
# (e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "ray-plantain needs Python 3.11 (bpy 5.0.1 wheels)"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
python -m pip install -q -e '.[test]'
python - <<'PY'
import importlib.metadata as md
print("installed:", ", ".join(f"{p} {md.version(p)}" for p in ("torch", "numpy", "bpy", "diffusers", "transformers", "scipy")))
import numpy, bpy  # noqa: F401  (fails loudly if something upgraded numpy past bpy's ABI)
PY

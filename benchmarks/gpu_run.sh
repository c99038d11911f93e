#!/usr/bin/env bash
# The GPU measurements of benchmarks/RESULTS.md ("The real klein 4B shape on a GPU"), as one script, for a CUDA
# box (random weights: timings only, never findings):
#   1. per-head capture, card slices and the image probe's change vectors on the real klein 4B transformer
#      shape (bf16, random weights), at 512^2 (the text probe's side) and 1024^2 (the image probe's), text probe
#      and editing layouts;
#   2. evaluate generate's own bookkeeping against plain pipeline calls, tiny klein on the GPU.
#
#   bash benchmarks/gpu_run.sh [OUT_DIR]        # default runs/gpu-bench; PYTHON=... to choose the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-bench}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import torch, diffusers, transformers, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$out/env.txt"
rc=0
for res in 512 1024; do
  timeout 300 $py benchmarks/bench_capture.py --cases "" --klein --klein-res $res --repeats 20 2>&1 \
    | tee "$out/bench_capture_klein_$res.txt" || rc=1
done
timeout 200 $py benchmarks/bench_evaluate.py --model tiny --device cuda --skip-score --rounds 5 2>&1 \
  | tee "$out/bench_evaluate_tiny_cuda.txt" || rc=1
exit $rc

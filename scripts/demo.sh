#!/usr/bin/env bash
# Installs everything, then runs the three jobs end to end on the tiny random-weight klein:
#   render the 25 default scenes and one colour variant of each -> runs/render
#   probe the tiny klein on the texts (the card's question) -> runs/probe
#   probe it on the renders (the same question in pixels, no word changing) -> runs/probe-images
#   set the two probes side by side on their shared units -> runs/text-vs-images
#   a population of 2 untrained networks, and the text probe ranked among them -> runs/population, runs/probe-vs-untrained
#   evaluate it on the renders: generate, baselines, score, ablate, link (direct, per sample), report -> runs/evaluate
# Sizes are cut (128 px renders at 16 samples per pixel, few sampling steps, two random draws), not coverage:
# every step and output of a real run is exercised. With real weights, replace `--model tiny` by a hub id or
# snapshot folder and drop the size flags (see README): 256 px renders, the models' own steps, 19 random
# draws per k.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m render --out runs/render --resolution 128 --samples 16 --recolor 1
# The tiny model's matrices are too small to split over CPU threads: on a busy 2-core machine one torch
# thread ran it 5x faster than two (threads spin while waiting). Real models on a GPU are unaffected.
export OMP_NUM_THREADS=1
# 8 sampling steps (captures at 4 of them) instead of 50: the capture, statistics and report are the same code
python -m probe run --model tiny --out runs/probe --steps 8 --quiet
python -m probe run --model tiny --stimuli images --data runs/render --out runs/probe-images --steps 8 --quiet
python -m probe compare runs/probe runs/probe-images --units shared --out runs/text-vs-images
# 2 untrained networks in one command (a real check takes 19: 0-18, so that a rank p can reach 0.05). Seeds from 2:
# the tiny klein's own transformer is the initialisation with seed 1, so a population seed 1 would be that network.
python -m probe run --model tiny --out runs/population --steps 8 --quiet --no-report \
    --randomize transformer --randomize-seeds 2-3
python -m probe compare runs/probe --population runs/population --out runs/probe-vs-untrained
# 4 editing steps instead of the model's 50; the causal test at k = 2 with two random draws (its report
# states that the rank p cannot go below 1/3 with two draws); bootstrap CIs from 500 resamples. k = 2 because
# the tiny klein's blocks have 4 heads each and a random draw takes the other heads of the top-k's blocks:
# a larger k can put 3 top heads in one block and leave too few others (refused, by design); klein has 24.
# Random draws are all different: when the top-2 share one 4-head group only one other pair exists, and the
# job makes that one draw and says so (the rank p's floor is then 1/2).
python -m evaluate all --model tiny --data runs/render --probe runs/probe-images --out runs/evaluate \
    --steps 4 --k 2 --n-random 2 --n-boot 500 --quiet
echo "done: open runs/probe/report.md, runs/probe-images/report.md, runs/text-vs-images/compare.md,"
echo "runs/probe-vs-untrained/compare.md and"
echo "runs/evaluate/report.md (tiny model: random weights, not findings)"

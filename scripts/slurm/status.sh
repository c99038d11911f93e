#!/usr/bin/env bash
# What a study has not finished yet, by shard (run it on the login node; loads no model):
#   bash scripts/slurm/status.sh                       # the study of scripts/slurm/study.sh
#   STUDY_CONFIG=runs/study/study.sh bash scripts/slurm/status.sh     # a submitted study, as submitted
# Exit 0 when render and generate are complete, 3 when something is missing (the listing names the shards).
set -uo pipefail
cd "$(dirname "$0")/../.."
source "${STUDY_CONFIG:-scripts/slurm/study.sh}"

code=0
"$PYTHON" -m render "${SCENE_ARGS[@]}" "${RECOLOR_ARGS[@]}" --out "$DATA" --status "$RENDER_TASKS" || code=$?
echo
if [[ -f "$DATA/manifest.json" ]]; then
    "$PYTHON" -m evaluate generate --data "$DATA" --out "$EVAL" --status "$((GEN_TASKS * GPUS_PER_TASK))" || code=$?
else
    echo "evaluate generate: no $DATA/manifest.json yet"
fi
if (( GPUS_PER_TASK > 1 )); then
    echo "(GPUS_PER_TASK=$GPUS_PER_TASK: generate shard k ran in array task k / $GPUS_PER_TASK, rank k % $GPUS_PER_TASK)"
fi
echo
if [[ -f "$PROBE/captures.npz" ]]; then echo "probe: merged ($PROBE/captures.npz)"; else
    echo "probe: not merged yet; python -m probe merge $PROBE --out $PROBE names any missing pair"; fi
exit "$code"

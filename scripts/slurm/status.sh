#!/usr/bin/env bash
# What a study has not finished yet, by shard (run it on the login node; loads no model):
#   bash scripts/slurm/status.sh                       # the study of scripts/slurm/study.sh
#   STUDY_CONFIG=runs/study/study.sh bash scripts/slurm/status.sh     # a submitted study, as submitted
# Exit 0 when render, probe shards and generate are complete, 3 when something is missing (the listing names the
# shards), 2 when the probe's shards cannot be merged (mixed configurations or conflicting duplicates).
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
    echo "(GPUS_PER_TASK=$GPUS_PER_TASK: generate and probe shard k ran in array task k / $GPUS_PER_TASK, rank k % $GPUS_PER_TASK)"
fi
echo
if [[ -d "$PROBE/shards" ]]; then
    # the probe's shards: pairs missing by shard (the same checks as the merge; nothing is written)
    "$PYTHON" -m probe merge "$PROBE" --dry-run || code=$?
    if [[ -f "$PROBE/captures.npz" ]]; then echo "probe: merged ($PROBE/captures.npz)"; fi
else
    echo "probe: no shard has finished yet ($PROBE/shards/ does not exist)"
fi
exit "$code"

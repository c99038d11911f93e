#!/usr/bin/env bash
# Submit a whole ray-plantain study to SLURM, with the sizes of scripts/slurm/study.sh (or the environment):
#
#   render array ──► probe array ──► merge ──┐
#        └─────────► generate array ─────────┴──► finish (status check, score, link, report)
#
#   bash scripts/slurm/submit.sh                       # from anywhere; prints the job ids
#   N_SCENES=200 RENDER_TASKS=16 GEN_TASKS=16 bash scripts/slurm/submit.sh
#   DRY_RUN=1 bash scripts/slurm/submit.sh             # print the five sbatch commands, submit nothing
#
# Each job waits for the ones before it (--dependency=afterok): if a task fails, the jobs after it never
# start (squeue shows DependencyNeverSatisfied). Fix the cause, `scancel` them, and submit again: every
# step skips the work it finished. `bash scripts/slurm/status.sh` lists what is missing, by shard.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/slurm/study.sh
export "${STUDY_VARS[@]}"

# The study's settings are resolved now and kept beside its outputs: $STUDY/study.sh is what every job
# sources (and what status.sh reads with STUDY_CONFIG=$STUDY/study.sh). A second submission into the same
# $STUDY must use the same settings, or its outputs would mix two configurations.
resolved=$(for v in "${STUDY_VARS[@]}"; do printf '%s=%q\n' "$v" "${!v}"; done)
if [[ -f "$STUDY/submitted.env" ]] && [[ "$(cat "$STUDY/submitted.env")" != "$resolved" ]]; then
    echo "submit.sh: $STUDY was submitted before with other settings; use another STUDY=..., or the same" \
         "settings (differences: $(diff <(cat "$STUDY/submitted.env") <(echo "$resolved") | grep '^[<>]' | tr '\n' ' '))" >&2
    exit 2
fi
if [[ -z "${DRY_RUN:-}" ]]; then
    mkdir -p "$STUDY" "$LOGS"
    echo "$resolved" > "$STUDY/submitted.env"
    { echo "# resolved by scripts/slurm/submit.sh on $(date -Is)"; echo "$resolved"; cat scripts/slurm/study.sh; } \
        > "$STUDY/study.sh"
fi
export STUDY_CONFIG="$STUDY/study.sh"

common=(--parsable --chdir="$PWD" ${ACCOUNT:+"--account=$ACCOUNT"})
cpu=(${PARTITION_CPU:+"--partition=$PARTITION_CPU"} --cpus-per-task="$CPUS_CPU_JOB" --mem="$MEM_CPU_JOB")
gpu=(${PARTITION_GPU:+"--partition=$PARTITION_GPU"} --gres="gpu:$GPUS_PER_TASK" --cpus-per-task="$CPUS_GPU_TASK"
     --mem="$MEM_GPU_TASK")
if [[ "$RENDER_DEVICE" == cpu || "$RENDER_DEVICE" == auto ]]; then
    render=(${PARTITION_CPU:+"--partition=$PARTITION_CPU"} --cpus-per-task="$CPUS_RENDER" --mem="$MEM_RENDER")
else                                         # a GPU backend: one GPU per render task
    render=(${PARTITION_GPU:+"--partition=$PARTITION_GPU"} --gres=gpu:1 --cpus-per-task="$CPUS_RENDER" --mem="$MEM_RENDER")
fi
array_log=(--output="$LOGS/%x-%A_%a.out")
job_log=(--output="$LOGS/%x-%j.out")

submit() {                                   # sbatch --parsable prints "id" or "id;cluster"
    if [[ -n "${DRY_RUN:-}" ]]; then
        echo "sbatch $*" >&2
        local script=${!#}
        script=${script##*/}
        echo "<${script%.sbatch}-job>"
    else
        local out
        out=$(sbatch "$@")
        echo "${out%%;*}"
    fi
}

R=$(submit "${common[@]}" "${render[@]}" "${array_log[@]}" --time="$TIME_RENDER" \
    --array="0-$((RENDER_TASKS - 1))" scripts/slurm/render.sbatch)
P=$(submit "${common[@]}" "${gpu[@]}" "${array_log[@]}" --time="$TIME_PROBE" --dependency="afterok:$R" \
    --array="0-$((PROBE_TASKS - 1))" scripts/slurm/probe.sbatch)
M=$(submit "${common[@]}" "${cpu[@]}" "${job_log[@]}" --time="$TIME_MERGE" --dependency="afterok:$P" \
    scripts/slurm/merge.sbatch)
G=$(submit "${common[@]}" "${gpu[@]}" "${array_log[@]}" --time="$TIME_GEN" --dependency="afterok:$R" \
    --array="0-$((GEN_TASKS - 1))" scripts/slurm/generate.sbatch)
F=$(submit "${common[@]}" "${cpu[@]}" "${job_log[@]}" --time="$TIME_FINISH" --dependency="afterok:$M:$G" \
    scripts/slurm/finish.sbatch)

echo "study $STUDY: render $R (${RENDER_TASKS} tasks) -> probe $P (${PROBE_TASKS}) -> merge $M;" \
     "generate $G (${GEN_TASKS}) -> finish $F. Logs: $LOGS/. Progress: bash scripts/slurm/status.sh" \
     "with STUDY_CONFIG=$STUDY/study.sh"

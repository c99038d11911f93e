#!/usr/bin/env bash
# Submit a whole ray-plantain study to SLURM, with the sizes of scripts/slurm/study.sh (or the environment):
#
#   render array ──► probe array ──► merge ──┐
#        └─────────► generate array ─────────┴──► finish (status check, score, link, report)
#
#   bash scripts/slurm/submit.sh                       # from anywhere; prints the job ids
#   N_SCENES=200 RENDER_TASKS=16 GEN_TASKS=16 bash scripts/slurm/submit.sh
#   DRY_RUN=1 bash scripts/slurm/submit.sh             # print the five sbatch commands, submit nothing
#   GPUS_PER_TASK=0 PARTITION_CPU=cpu bash scripts/slurm/submit.sh    # a CPU-only cluster: no GPU anywhere
#
# Each job waits for the ones before it (--dependency=afterok): if a task fails, the jobs after it never
# start (squeue shows DependencyNeverSatisfied). Fix the cause, `scancel` them, and submit again: every
# step skips the work it finished. `bash scripts/slurm/status.sh` lists what is missing, by shard, and prints
# the sbatch commands that run only that again (the options of each job come from scripts/slurm/submission.sh).
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/../.."
source scripts/slurm/study.sh
source scripts/slurm/submission.sh
export "${STUDY_VARS[@]}"

# The study's settings are resolved now and kept beside its outputs: $STUDY/study.sh is what every job
# sources (and what status.sh reads). A second submission into the same
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

step() {                                     # step NAME [OPTION ...]: submit NAME.sbatch with its options
    local name=$1
    shift
    sbatch_args "$name"
    submit --parsable "${SBATCH_ARGS[@]}" "$@" "scripts/slurm/$name.sbatch"
}
R=$(step render --array="0-$((RENDER_TASKS - 1))")
P=$(step probe --dependency="afterok:$R" --array="0-$((PROBE_TASKS - 1))")
M=$(step merge --dependency="afterok:$P")
G=$(step generate --dependency="afterok:$R" --array="0-$((GEN_TASKS - 1))")
F=$(step finish --dependency="afterok:$M:$G")
[[ -n "${DRY_RUN:-}" ]] || record_submission "$caller" "$STUDY_CONFIG"

echo "study $STUDY: render $R (${RENDER_TASKS} tasks) -> probe $P (${PROBE_TASKS}) -> merge $M;" \
     "generate $G (${GEN_TASKS}) -> finish $F. Logs: $LOGS/. Progress: bash scripts/slurm/status.sh" \
     "(from this folder; from anywhere: bash scripts/slurm/status.sh $STUDY)"

# How a study's jobs are submitted: the one helper that builds a step's sbatch options from the values of
# study.sh (partition, account, GPUs, CPUs, memory, log path, time), used by submit.sh for the five jobs
# and by every "run them again" command that status.sh and finish.sbatch print; and the record of which
# study was submitted from which folder (status.sh reads it). Source study.sh (or a study's copy) first:
#
#   source scripts/slurm/study.sh; source scripts/slurm/submission.sh
#   sbatch_args probe                  # -> SBATCH_ARGS=(--chdir=... --gres=gpu:1 --cpus-per-task=8 ...)
#   sbatch_line probe --array=2 --export=ALL,SHARD_COUNT=4      # -> "sbatch ... scripts/slurm/probe.sbatch"
#
# GPUS_PER_TASK=0 is a CPU-only cluster: the probe and generate jobs ask for no GPU (--gres=none clears
# their templates' "#SBATCH --gres=gpu:1"), go to PARTITION_GPU if set, else PARTITION_CPU, and run on CPU.

SLURM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# model_gpus: GPUs each probe/generate task asks for (0: none, CPU only)
model_gpus() { echo "$(( GPUS_PER_TASK > 0 ? GPUS_PER_TASK : 0 ))"; }

# shards_per_task: probe/generate shards one array task runs (torchrun ranks when GPUS_PER_TASK > 1)
shards_per_task() { echo "$(( GPUS_PER_TASK > 1 ? GPUS_PER_TASK : 1 ))"; }

# sbatch_args STEP (render, probe, merge, generate, finish): its sbatch options, in SBATCH_ARGS
sbatch_args() {
    local step=$1 partition gres=() cpus mem time log=(--output="$LOGS/%x-%A_%a.out")
    case "$step" in
        render)
            cpus=$CPUS_RENDER mem=$MEM_RENDER time=$TIME_RENDER
            if [[ "$RENDER_DEVICE" == cpu || "$RENDER_DEVICE" == auto ]]; then
                partition=$PARTITION_CPU
            else                                 # a GPU backend: one GPU per render task
                partition=$PARTITION_GPU gres=(--gres=gpu:1)
            fi ;;
        probe | generate)
            cpus=$CPUS_GPU_TASK mem=$MEM_GPU_TASK
            if [[ $step == probe ]]; then time=$TIME_PROBE; else time=$TIME_GEN; fi
            if (( $(model_gpus) > 0 )); then
                partition=$PARTITION_GPU gres=(--gres="gpu:$GPUS_PER_TASK")
            else                                 # CPU only: clear the template's --gres=gpu:1
                partition=${PARTITION_GPU:-$PARTITION_CPU} gres=(--gres=none)
            fi ;;
        merge | finish)
            cpus=$CPUS_CPU_JOB mem=$MEM_CPU_JOB partition=$PARTITION_CPU log=(--output="$LOGS/%x-%j.out")
            if [[ $step == merge ]]; then time=$TIME_MERGE; else time=$TIME_FINISH; fi ;;
        *) echo "sbatch_args: no step $step" >&2; return 2 ;;
    esac
    SBATCH_ARGS=(--chdir="$SLURM_REPO" ${ACCOUNT:+"--account=$ACCOUNT"} ${partition:+"--partition=$partition"}
                 "${gres[@]}" --cpus-per-task="$cpus" --mem="$mem" "${log[@]}" --time="$time")
}

# sbatch_line STEP [OPTION ...]: the whole sbatch command of STEP as one shell line, its options quoted
# where the shell needs it; an option --dependency=afterok:$var... is kept as written, so the line can wait
# for a job id that an earlier line of the same block put into $var.
sbatch_line() {
    local step=$1 a line
    shift
    sbatch_args "$step" || return
    line="sbatch"
    for a in "${SBATCH_ARGS[@]}" "$@"; do
        if [[ $a == --dependency=* || $a =~ ^[][A-Za-z0-9_./%:=,@+-]+$ ]]; then line+=" $a"
        else line+=" $(printf '%q' "$a")"; fi
    done
    echo "$line scripts/slurm/$step.sbatch"
}

# --- which study was submitted from where (one line per submission; status.sh finds the last one) -------
SUBMISSIONS=${XDG_STATE_HOME:-$HOME/.local/state}/ray-plantain/slurm-submissions.tsv

# record_submission CALLER_DIR STUDY_CONFIG: date, repository, the folder submit.sh was run from, study.sh
record_submission() {
    mkdir -p "$(dirname "$SUBMISSIONS")" 2>/dev/null && \
        printf '%s\t%s\t%s\t%s\n' "$(date -Is)" "$SLURM_REPO" "$1" "$(cd "$(dirname "$2")" && pwd)/$(basename "$2")" \
            >> "$SUBMISSIONS" 2>/dev/null || true
}

# last_submission CALLER_DIR: "date<TAB>study.sh<TAB>how found" of the last study of this repository
# submitted from CALLER_DIR (else from anywhere) whose study.sh still exists; nothing if none
last_submission() {
    [[ -f "$SUBMISSIONS" ]] || return 0
    local date repo from config here="" any=""
    while IFS=$'\t' read -r date repo from config; do
        [[ "$repo" == "$SLURM_REPO" && -f "$config" ]] || continue
        any="$date"$'\t'"$config"$'\t'"the last study submitted (from $from)"
        [[ "$from" == "$1" ]] && here="$date"$'\t'"$config"$'\t'"the last study submitted from this folder"
    done < "$SUBMISSIONS"
    if [[ -n "$here" ]]; then echo "$here"; elif [[ -n "$any" ]]; then echo "$any"; fi
}

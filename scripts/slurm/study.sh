# ray-plantain study on SLURM: every size and path, in one place. Sourced by submit.sh and by every
# *.sbatch job (so the jobs and `status.sh` see the same values). Edit here, or override any variable
# from the environment: `N_SCENES=200 RENDER_TASKS=16 bash scripts/slurm/submit.sh`.
# submit.sh exports these to the jobs and copies this file into $STUDY/, so a study keeps its settings.

# --- where ------------------------------------------------------------------------------------------
: "${STUDY:=runs/study}"                    # everything of one study lives under this folder
: "${DATA:=$STUDY/render}"                  # python -m render --out
: "${PROBE:=$STUDY/probe}"                  # python -m probe run/merge --out
: "${EVAL:=$STUDY/evaluate}"                # python -m evaluate --out
: "${LOGS:=$STUDY/logs}"                    # one log per job / array task
: "${PYTHON:=.venv/bin/python}"             # the project's venv (bash scripts/setup.sh), relative to the repo
: "${TORCHRUN:=.venv/bin/torchrun}"
: "${MODEL:=black-forest-labs/FLUX.2-klein-base-4B}"   # hub id or a local snapshot folder

# --- sizes ------------------------------------------------------------------------------------------
: "${N_SCENES:=0}"                          # 0: the 25 shipped scenes; N: N procedurally generated scenes
: "${SCENE_SEED:=1}"                        # generator seed (--generate N --seed S)
: "${RECOLOR:=2}"                           # colour variants per scene (render --recolor)
: "${RESOLUTION:=512}"                      # render size in pixels
: "${SPP:=128}"                             # Cycles samples per pixel
: "${RENDER_DEVICE:=auto}"                  # render --device: auto, cpu, cuda, optix, hip
: "${RENDER_TASKS:=8}"                      # render array size (one shard per task)
: "${PROBE_STIMULI:=images}"                # images: the rendered pairs of $DATA; text: prompts/pairs.jsonl
: "${PROBE_PROTOCOL:=heads}"                # heads (real heads, masked padding) or card (the card's protocol)
: "${PROBE_TASKS:=4}"                       # probe array size
: "${GEN_TASKS:=8}"                         # evaluate generate array size
: "${GPUS_PER_TASK:=1}"                     # > 1: torchrun, one process per GPU; shard = task x GPUs + rank;
                                            # 0: a CPU-only cluster (no GPU requested; probe, generate on CPU)
: "${SEED:=0}"                              # sampling seed (probe and generate)
: "${N_PERM:=10000}"                        # probe sign-flip permutations
: "${N_BOOT:=1000}"                         # bootstrap resamples (probe blocks, evaluate CIs and link)

# --- scheduler (empty: the cluster's default) ---------------------------------------------------------
: "${PARTITION_CPU:=}"                      # render on CPU nodes unless RENDER_DEVICE is a GPU backend
: "${PARTITION_GPU:=}"                      # probe, generate (GPUS_PER_TASK=0: PARTITION_CPU if this is empty)
: "${ACCOUNT:=}"
: "${CPUS_RENDER:=16}"      ; : "${MEM_RENDER:=16G}"  ; : "${TIME_RENDER:=06:00:00}"
: "${CPUS_GPU_TASK:=8}"     ; : "${MEM_GPU_TASK:=64G}"; : "${TIME_PROBE:=08:00:00}" ; : "${TIME_GEN:=12:00:00}"
: "${CPUS_CPU_JOB:=8}"      ; : "${MEM_CPU_JOB:=32G}" ; : "${TIME_MERGE:=02:00:00}" ; : "${TIME_FINISH:=04:00:00}"

STUDY_VARS=(STUDY DATA PROBE EVAL LOGS PYTHON TORCHRUN MODEL N_SCENES SCENE_SEED RECOLOR RESOLUTION SPP
            RENDER_DEVICE RENDER_TASKS PROBE_STIMULI PROBE_PROTOCOL PROBE_TASKS GEN_TASKS GPUS_PER_TASK SEED
            N_PERM N_BOOT PARTITION_CPU PARTITION_GPU ACCOUNT CPUS_RENDER MEM_RENDER TIME_RENDER CPUS_GPU_TASK
            MEM_GPU_TASK TIME_PROBE TIME_GEN CPUS_CPU_JOB MEM_CPU_JOB TIME_MERGE TIME_FINISH)

# --- derived (the same on every node, from the values above) ----------------------------------------
if (( N_SCENES > 0 )); then
    SCENE_ARGS=(--generate "$N_SCENES" --seed "$SCENE_SEED")
else
    SCENE_ARGS=()                           # the shipped scenes/
fi
if (( RECOLOR > 0 )); then RECOLOR_ARGS=(--recolor "$RECOLOR"); else RECOLOR_ARGS=(); fi
if [[ "$PROBE_STIMULI" == images ]]; then
    PROBE_INPUT=(--stimuli images --data "$DATA")
else
    PROBE_INPUT=()                          # the text probe: the shipped prompt pairs
fi
# Resubmitting chosen tasks of an N-task array (`sbatch ... --array=2,5 --export=ALL,SHARD_COUNT=N ...`, as
# status.sh prints it): Slurm describes the new, smaller array, so describe the original one to --shard auto.
if [[ -n "${SHARD_COUNT:-}" && -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    export SLURM_ARRAY_TASK_COUNT="$SHARD_COUNT" SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=$((SHARD_COUNT - 1))
    unset SLURM_ARRAY_TASK_STEP
fi
# the model jobs of a CPU-only cluster (GPUS_PER_TASK=0) run on CPU in bfloat16, as on a GPU (--dtype auto would
# take float32 there: twice the memory, and 3.5-4x the time per matrix product on a CPU with bf16 instructions)
if (( GPUS_PER_TASK < 1 )); then MODEL_DEVICE=(--device cpu --dtype bfloat16); else MODEL_DEVICE=(); fi
# one process per task, or torchrun with one process per GPU (no inter-process communication)
if (( GPUS_PER_TASK > 1 )); then
    LAUNCH=("$TORCHRUN" --standalone --nproc-per-node "$GPUS_PER_TASK" -m)
else
    LAUNCH=("$PYTHON" -m)
fi

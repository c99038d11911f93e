# What a study has not finished, step by step, and the sbatch commands that run exactly that again, chained
# like submit.sh chains the whole study. Used by status.sh (every step) and by finish.sbatch (render and
# generate, before it scores). Source study.sh (or a study's copy) and submission.sh first; STUDY_CONFIG
# names the study file the printed commands hand to the jobs (default scripts/slurm/study.sh).
#
#   check_render; check_probe; check_generate; check_report    # print each listing; collect what to rerun
#   print_reruns                                               # the commands, complete, runnable as printed
#
# CHECK_CODE: 0 complete, 3 something is missing, 2 something needs a fix first (e.g. probe shards that
# cannot be merged). RERUN_<STEP>: the array tasks to run again ("1,3"), "all", or empty.

CHECK_CODE=0
RERUN_RENDER="" RERUN_PROBE="" RERUN_MERGE="" RERUN_GENERATE="" RERUN_FINISH=""

_missing() { (( CHECK_CODE == 2 )) || CHECK_CODE=$1; }

# the study's scene and size options of python -m render (what render.sbatch passes)
render_options() {
    printf '%q ' "${SCENE_ARGS[@]}" "${RECOLOR_ARGS[@]}" --resolution "$RESOLUTION" --samples "$SPP"
}

# show TEXT: a job's own --status listing, without its generic "run them again" line (print_reruns prints
# the complete commands) and with the study's scene and size options in its `python -m render --out` hints
show() {
    awk -v opts="$(render_options)" '
        index($0, "run them again (finished items are skipped): ") == 1 { next }
        { out = ""; line = $0; key = "python -m render --out "
          while ((i = index(line, key)) > 0) {
              out = out substr(line, 1, i - 1) "python -m render " opts "--out "; line = substr(line, i + length(key))
          }
          print out line }' <<< "$1"
}

# tasks_of TEXT PER_TASK: the array tasks that hold the shards named in a listing's "in shard(s) 1,5 of 8"
# line (shard k ran in task k / PER_TASK); "all" when the listing names none (nothing finished yet)
tasks_of() {
    local shards k
    shards=$(grep -o 'in shard(s) [0-9,]* of' <<< "$1" | head -1 | tr -dc '0-9,' || true)
    [[ -n "$shards" ]] || { echo all; return; }
    for k in ${shards//,/ }; do echo $(( k / $2 )); done | sort -nu | paste -sd, -
}

check_render() {
    local out code=0
    out=$("$PYTHON" -m render "${SCENE_ARGS[@]}" "${RECOLOR_ARGS[@]}" --out "$DATA" --status "$RENDER_TASKS" 2>&1) \
        || code=$?
    show "$out"
    case $code in
        0) ;;
        3) RERUN_RENDER=$(tasks_of "$out" 1); _missing 3 ;;
        *) CHECK_CODE=2 ;;
    esac
}

check_generate() {
    local out code=0 per
    per=$(shards_per_task)
    if [[ ! -f "$DATA/manifest.json" ]]; then
        echo "evaluate generate: nothing to check yet (no $DATA/manifest.json: the render writes it)"
        RERUN_GENERATE=all; _missing 3; return
    fi
    out=$("$PYTHON" -m evaluate generate --data "$DATA" --out "$EVAL" --status "$((GEN_TASKS * per))" 2>&1) || code=$?
    show "$out"
    if (( per > 1 )); then
        echo "(GPUS_PER_TASK=$GPUS_PER_TASK: generate shard k ran in array task k / $per, torchrun rank k % $per)"
    fi
    case $code in
        0) ;;
        3) RERUN_GENERATE=$(tasks_of "$out" "$per"); _missing 3 ;;
        *) CHECK_CODE=2 ;;
    esac
}

# merged_matches: captures.npz was merged from exactly the shard files in $PROBE/shards now, none newer
merged_matches() {
    [[ -f "$PROBE/captures.npz" && -f "$PROBE/config.json" ]] || { echo "no captures.npz yet"; return 1; }
    "$PYTHON" - "$PROBE" <<'PY'
import json, os, sys
probe = sys.argv[1]
made = {os.path.basename(s.get("file", "")) for s in json.load(open(os.path.join(probe, "config.json"))).get("shards", [])}
now = {f for f in os.listdir(os.path.join(probe, "shards")) if f.startswith("partial-") and f.endswith(".npz")}
merged = os.path.getmtime(os.path.join(probe, "captures.npz"))
newer = sorted(f for f in now if os.path.getmtime(os.path.join(probe, "shards", f)) > merged)
why = ([f"gone since: {', '.join(sorted(made - now))}"] if made - now else []) + \
      ([f"not in it: {', '.join(sorted(now - made))}"] if now - made else []) + \
      ([f"rewritten since: {', '.join(newer)}"] if newer else [])
print("; ".join(why) or f"from the {len(now)} shard file(s) there now")
sys.exit(1 if why else 0)
PY
}

check_probe() {
    local out code=0 why per
    per=$(shards_per_task)
    if [[ ! -d "$PROBE/shards" ]]; then
        echo "probe: no shard has finished yet ($PROBE/shards/ does not exist)"
        RERUN_PROBE=all RERUN_MERGE=1; _missing 3; return
    fi
    # the probe's shards: pairs missing by shard (the same checks as the merge; nothing is written)
    out=$("$PYTHON" -m probe merge "$PROBE" --dry-run 2>&1) || code=$?
    if (( code == 0 )) && why=$(merged_matches); then
        show "$out" | grep -v '^ready: ' || true   # it is merged already: no "ready to merge"
        echo "probe: merged ($PROBE/captures.npz, $why)"
        return
    fi
    show "$out"
    case $code in
        0)  echo "probe: not merged ($PROBE/captures.npz: $why)"
            RERUN_MERGE=1; _missing 3 ;;
        3)  RERUN_PROBE=$(tasks_of "$out" "$per") RERUN_MERGE=1; _missing 3
            if [[ -f "$PROBE/captures.npz" ]]; then
                echo "probe: $PROBE/captures.npz is from an earlier merge and does not hold the shards missing now"
            fi ;;
        *)  if [[ -n "$RERUN_RENDER" ]]; then     # check_render ran first: the render is what is missing
                echo "(the probe's shards read the render: they are checked again once it is complete)"; _missing 3
            else
                CHECK_CODE=2
            fi ;;
    esac
}

# check_report: finish's report.md exists and is newer than everything it reads
check_report() {
    local report="$EVAL/report.md" newer=""
    if [[ ! -f "$report" ]]; then
        echo "finish: no $report yet (score, link, report)"
        RERUN_FINISH=1; _missing 3; return
    fi
    for f in "$DATA/manifest.json" "$PROBE/captures.npz"; do
        if [[ -f "$f" && "$f" -nt "$report" ]]; then newer="$f"; break; fi
    done
    [[ -n "$newer" || ! -d "$EVAL/pred" ]] || newer=$(find "$EVAL/pred" -name '*.json' -newer "$report" -print -quit)
    if [[ -n "$newer" ]]; then
        echo "finish: $report is older than $newer"
        RERUN_FINISH=1; _missing 3
    else
        echo "finish: $report is up to date"
    fi
}

# queued: this study's jobs still in the queue (their logs go to $LOGS), one per line; nothing where squeue
# is not here or cannot say (Slurm < 20.11 has no STDOUT field)
queued() {
    command -v squeue > /dev/null 2>&1 || return 0
    local logs=$LOGS
    [[ "$logs" == /* ]] || logs="$SLURM_REPO/$logs"
    squeue -h -u "$(id -un)" -O "JobArrayID:|,Name:|,State:|,Reason:|,STDOUT:" 2>/dev/null |
        awk -F'|' -v logs="${logs%/}/" -v self="${SLURM_JOB_ID:-}" \
            'index($5, logs) == 1 && $1 != self && $1 !~ "^" self "_" {
                 print $1 " " $2 " " $3 ($4 != "None" && $4 != "" ? " (" $4 ")" : "") }' || true
}

# _rerun VAR STEP TASKS COUNT DEPS...: one line of the block; DEPS are the shell variables of earlier lines
_rerun() {
    local var=$1 step=$2 tasks=$3 count=$4 dep="" v opts=()
    shift 4
    for v in "$@"; do [[ -n "$v" ]] && dep+=":\${${v}_job%;*}"; done
    [[ -z "$dep" ]] || opts+=(--dependency="afterok$dep")
    local env="ALL,STUDY_CONFIG=${STUDY_CONFIG:-scripts/slurm/study.sh}"
    if [[ -n "$tasks" && "$tasks" != all && "$(tr ',' '\n' <<< "$tasks" | wc -l)" -ge "$count" ]]; then tasks=all; fi
    if [[ "$tasks" == all ]]; then
        opts+=(--array="0-$((count - 1))")
    elif [[ -n "$tasks" ]]; then
        opts+=(--array="$tasks") env+=",SHARD_COUNT=$count"
    fi
    if [[ -n "$var" ]]; then
        echo "    ${var}_job=\$($(sbatch_line "$step" --parsable "${opts[@]}" --export="$env"))"
    else
        echo "    $(sbatch_line "$step" "${opts[@]}" --export="$env")"
    fi
}

# print_reruns: the sbatch commands that run again what the checks found missing, each waiting for the
# jobs whose output it reads (render -> probe -> merge, render -> generate, both -> finish); none while
# jobs of the study are still in the queue (what they will write is missing only until they finish)
print_reruns() {
    local r="" p="" m="" g="" q
    [[ -n "$RERUN_RENDER$RERUN_PROBE$RERUN_MERGE$RERUN_GENERATE$RERUN_FINISH" ]] || return 0
    echo
    q=$(queued)
    if [[ -n "$q" ]]; then
        echo "still in the queue (squeue): $(paste -sd';' - <<< "$q" | sed 's/;/; /g')."
        echo "What they will write is listed as missing until they finish: check again when they have left the" \
             "queue (a job pending with DependencyNeverSatisfied never will: scancel it, then check again)."
        return 0
    fi
    echo "run them again (finished work is skipped; each job waits for the ones whose output it reads):"
    printf '    cd %q\n' "$SLURM_REPO"
    if [[ -n "$RERUN_RENDER" ]]; then _rerun render render "$RERUN_RENDER" "$RENDER_TASKS"; r=render; fi
    if [[ -n "$RERUN_PROBE" ]]; then _rerun probe probe "$RERUN_PROBE" "$PROBE_TASKS" $r; p=probe; fi
    if [[ -n "$RERUN_MERGE" ]]; then _rerun merge merge "" 0 ${p:-$r}; m=merge; fi
    if [[ -n "$RERUN_GENERATE" ]]; then _rerun generate generate "$RERUN_GENERATE" "$GEN_TASKS" $r; g=generate; fi
    if [[ -z "$m$g" ]]; then _rerun "" finish "" 0 $r; else _rerun "" finish "" 0 $m $g; fi
}

#!/usr/bin/env bash
# The SLURM chain on a real SLURM, end to end, on this machine (CI runs it after the test suite):
#
#   bash scripts/test.sh && bash scripts/slurm/selftest.sh       # as root; from a fresh clone
#
#  1. SLURM: slurmctld, slurmd, sbatch and munged, installed from the system package manager where missing
#     (Debian: apt-get install slurmctld slurmd slurm-client munge). Where that package manager cannot be
#     reached it skips (exit 0, "selftest: SKIPPED: ..."); everything else that goes wrong fails (exit 1).
#  2. A private single-node cluster: its own munge key and socket, ports, state and logs in a temporary
#     folder, this machine's CPUs and memory (slurmd -C), one CPU-only partition; munged, slurmctld and
#     slurmd run as ordinary background processes and are stopped by their own process ids at the end.
#     SLURM_CONF points every client command at it; a system SLURM, if any, is left alone.
#  3. submit.sh at tiny sizes (MODEL=tiny, GPUS_PER_TASK=0: no GPU anywhere) into runs/slurm-selftest/study;
#     every job must end COMPLETED; status.sh, run without flags from where submit.sh was run, must say
#     complete; the merged probe must equal an unsharded `probe run` on the same render.
#  4. One render sample and one prediction are removed; status.sh must name them (exit 3) and print the
#     commands that run them again; those lines are run exactly as printed; the study must be complete again.
#
# KEEP=1 keeps the cluster's folder (config, daemon logs) in /tmp; the study stays in runs/slurm-selftest.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
START=$(date +%s)
say() { echo "selftest [$(( $(date +%s) - START )) s]: $*"; }
fail() { echo "selftest: FAILED: $*" >&2; exit 1; }
skip() { echo "selftest: SKIPPED: $*"; exit 0; }
[[ -x .venv/bin/python ]] || fail "no .venv here: run bash scripts/setup.sh (or bash scripts/test.sh) first"
PY=$REPO/.venv/bin/python
# nothing of the caller's environment reaches the study: its settings are below
unset STUDY_CONFIG $(bash -c 'source scripts/slurm/study.sh && echo "${STUDY_VARS[@]}"')
STUDY=runs/slurm-selftest/study

# --- 1. SLURM ------------------------------------------------------------------------------------------
missing=()
for c in slurmctld slurmd sbatch squeue scontrol sinfo munged; do command -v "$c" > /dev/null || missing+=("$c"); done
if (( ${#missing[@]} )); then
    command -v apt-get > /dev/null || skip "SLURM is not installed (${missing[*]} missing) and there is no apt-get" \
        "here: install slurmctld, slurmd and munge with this system's package manager, then run this again"
    (( EUID == 0 )) || fail "SLURM is not installed (${missing[*]} missing); installing it needs root"
    say "installing SLURM (${missing[*]} missing): apt-get install slurmctld slurmd slurm-client munge"
    timeout 300 apt-get update -q > /tmp/rp-selftest-apt.log 2>&1 || \
        skip "the package manager is unreachable (apt-get update failed; see /tmp/rp-selftest-apt.log), so SLURM" \
             "cannot be installed"
    # no service is started by the packages (no systemd here): this test starts its own daemons
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge >> /tmp/rp-selftest-apt.log 2>&1
    code=$?
    [[ -z "$policy" ]] || rm -f "$policy"
    if (( code != 0 )); then
        grep -qiE "could not resolve|failed to fetch|temporary failure|unable to fetch" /tmp/rp-selftest-apt.log && \
            skip "the package manager is unreachable (apt-get install could not fetch; see /tmp/rp-selftest-apt.log)"
        fail "apt-get install slurmctld slurmd slurm-client munge failed (exit $code); see /tmp/rp-selftest-apt.log"
    fi
fi
(( EUID == 0 )) || fail "slurmd must run as root to start jobs; run this as root"

# --- 2. a private single-node cluster --------------------------------------------------------------------
W=$(mktemp -d /tmp/rp-slurm.XXXXXX)
chmod 755 "$W"                                   # munged wants its socket's folder searchable by all
pids=()
stop() {
    local i
    if [[ -n "${SLURM_CONF:-}" ]] && (( ${#pids[@]} )); then   # jobs left by a failure: their steps outlive slurmd
        scancel --user="$(id -un)" 2>/dev/null
        for i in $(seq 40); do [[ -z "$(squeue -h 2>/dev/null)" ]] && break; sleep 0.5; done
    fi
    for (( i = ${#pids[@]} - 1; i >= 0; i-- )); do kill "${pids[i]}" 2>/dev/null; done
    for i in "${pids[@]}"; do wait "$i" 2>/dev/null; done
    pids=()
    if [[ -n "${KEEP:-}" ]]; then echo "selftest: the cluster's folder is kept: $W"; else rm -rf "$W"; fi
}
trap stop EXIT
trap 'exit 130' INT TERM
logs_on_failure() {
    echo "--- slurmctld.log (last lines)"; tail -n 15 "$W/slurmctld.log" 2>/dev/null
    echo "--- slurmd.log (last lines)"; tail -n 15 "$W/slurmd.log" 2>/dev/null
    local f
    for f in "$STUDY"/logs/*.out; do [[ -f "$f" ]] && { echo "--- $f"; tail -n 25 "$f"; }; done
}
die() { logs_on_failure >&2; fail "$*"; }

read -r PORT_CTLD PORT_D < <("$PY" -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
NODE=$(slurmd -C | head -1)                     # NodeName=<host> CPUs=... RealMemory=... (this machine)
HOST=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<< "$NODE")
[[ -n "$HOST" ]] || fail "slurmd -C did not describe this machine: $NODE"
mkdir -p "$W/state" "$W/spool"
cat > "$W/slurm.conf" <<EOF
# ray-plantain selftest: one node, this machine, CPU only (written by scripts/slurm/selftest.sh)
ClusterName=rpselftest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_D
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$W/munge.sock
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$W/slurm.conf
if command -v mungekey > /dev/null; then mungekey -c -k "$W/munge.key"; else
    dd if=/dev/urandom of="$W/munge.key" bs=1024 count=1 2>/dev/null; fi   # munge < 0.5.14 has no mungekey
chmod 600 "$W/munge.key" || fail "no munge key could be written in $W"
munged --foreground --key-file="$W/munge.key" --socket="$W/munge.sock" --pid-file="$W/munged.pid" \
    --log-file="$W/munged.log" --seed-file="$W/munged.seed" > "$W/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [[ -S "$W/munge.sock" ]] && break; sleep 0.2; done
[[ -S "$W/munge.sock" ]] || { cat "$W/munged.out" >&2; fail "munged did not start"; }
slurmctld -D -f "$SLURM_CONF" > "$W/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N "$HOST" -f "$SLURM_CONF" > "$W/slurmd.out" 2>&1 &
pids+=($!)
state=""
for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
    [[ "$state" == idle ]] && break
    sleep 0.5
done
[[ "$state" == idle ]] || { die "the node did not come up (state '${state:-none}')"; }
say "cluster up ($(sbatch --version), $(munged --version 2>&1 | head -1)): $(sed 's/ Boards=[^ ]*//; s/ SocketsPerBoard=[^ ]*//; s/ CoresPerSocket=[^ ]*//; s/ ThreadsPerCore=[^ ]*//' <<< "$NODE"), partition cpu; munged, slurmctld, slurmd: pids ${pids[*]}"

# --- 3. the chain at tiny sizes ---------------------------------------------------------------------------
# the study's settings go to submit.sh alone: status.sh then runs as in a new shell, with no STUDY set
SETTINGS=(STUDY=runs/slurm-selftest/study MODEL=tiny GPUS_PER_TASK=0 PARTITION_CPU=cpu
          N_SCENES=3 SCENE_SEED=1 RECOLOR=1 RESOLUTION=32 SPP=2 RENDER_TASKS=2 PROBE_TASKS=2 GEN_TASKS=2
          N_PERM=200 N_BOOT=50 CPUS_RENDER=1 MEM_RENDER=2G CPUS_GPU_TASK=1 MEM_GPU_TASK=3G CPUS_CPU_JOB=1 MEM_CPU_JOB=2G
          TIME_RENDER=00:20:00 TIME_PROBE=00:20:00 TIME_GEN=00:20:00 TIME_MERGE=00:20:00 TIME_FINISH=00:20:00)
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAY_PLANTAIN_CACHE=${RAY_PLANTAIN_CACHE:-$W/cache} XDG_STATE_HOME=$W/state-home   # no trace in $HOME
rm -rf runs/slurm-selftest
mkdir -p runs/slurm-selftest

# wait_jobs: until this cluster's queue is empty, then every job (and array task) must be COMPLETED
wait_jobs() {
    local deadline=$(( $(date +%s) + ${SELFTEST_WAIT:-540} )) bad
    while [[ -n "$(squeue -h 2>/dev/null)" ]]; do
        (( $(date +%s) < deadline )) || die "jobs still in the queue after ${SELFTEST_WAIT:-540} s: $(squeue -h | tr -s ' ' | paste -sd';' -)"
        sleep 3
    done
    bad=$(scontrol -o show job | grep -v 'JobState=COMPLETED' | grep -o 'JobId=[0-9]*\|JobName=[^ ]*\|JobState=[^ ]*\|Reason=[^ ]*' | paste -sd' ' -)
    [[ -z "$bad" ]] || die "not every job completed: $bad"
}

say "submitting the chain (bash scripts/slurm/submit.sh, MODEL=tiny GPUS_PER_TASK=0, 3 scenes x 2 colours at 32 px)"
submitted=$(env "${SETTINGS[@]}" bash scripts/slurm/submit.sh) || die "submit.sh failed"
echo "$submitted"
env "${SETTINGS[@]}" DRY_RUN=1 bash scripts/slurm/submit.sh 2>&1 | grep -q -- '--gres=gpu' && die "a CPU-only study asked for a GPU"

# the unsharded probe run to compare the merged one with: the same command on the same render, here, beside
# the chain once the render array has finished (the render is not touched again before step 4)
render_job=$(sed -n 's/.*: render \([0-9]*\) .*/\1/p' <<< "$submitted")
[[ -n "$render_job" ]] || die "submit.sh did not name its render job"
source "$STUDY/study.sh"
deadline=$(( $(date +%s) + ${SELFTEST_WAIT:-540} ))
while [[ -n "$(squeue -h -j "$render_job" 2>/dev/null)" ]]; do
    (( $(date +%s) < deadline )) || die "the render array $render_job still in the queue after ${SELFTEST_WAIT:-540} s"
    sleep 2
done
"$PY" -m probe run "${PROBE_INPUT[@]}" --model "$MODEL" --protocol "$PROBE_PROTOCOL" --seed "$SEED" "${MODEL_DEVICE[@]}" \
    --out runs/slurm-selftest/unsharded --quiet --n-perm "$N_PERM" --n-boot "$N_BOOT" --no-report \
    > runs/slurm-selftest/unsharded.log 2>&1 &
unsharded=$!
pids+=("$unsharded")                          # stopped first (last in, first killed) if anything fails
wait_jobs
say "all five jobs COMPLETED"

status=$(bash scripts/slurm/status.sh 2>&1)
code=$?
(( code == 0 )) && grep -q '^complete: ' <<< "$status" || { echo "$status"; die "status.sh says incomplete (exit $code)"; }
grep -q "^study $STUDY (the last study submitted from this folder" <<< "$status" || \
    { echo "$status" | head -1; die "status.sh did not find the submitted study by itself"; }
say "status.sh (no flags): complete"

# the merged probe equals the unsharded run
wait "$unsharded" || { tail -20 runs/slurm-selftest/unsharded.log; die "the unsharded probe run failed"; }
unset 'pids[-1]'
"$PY" - "$PROBE" runs/slurm-selftest/unsharded <<'PY' || die "the merged probe differs from the unsharded run"
import json, sys
from pathlib import Path
import numpy as np
merged, whole = Path(sys.argv[1]), Path(sys.argv[2])
a, b = np.load(whole / "captures.npz"), np.load(merged / "captures.npz")
assert sorted(a.files) == sorted(b.files), (a.files, b.files)
for k in a.files:
    if a[k].dtype.kind == "f":
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6, err_msg=k)
    elif k == "meta_json":
        assert json.loads(str(a[k])) == json.loads(str(b[k])), k
    else:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
assert (merged / "units.csv").read_text() == (whole / "units.csv").read_text(), "units.csv"
print(f"selftest: merged probe == unsharded run: {len(a.files)} arrays of captures.npz ({a['a'].shape[0]} stimuli x "
      f"{a['a'].shape[1]} units in A), units.csv")
PY

# --- 4. lose one render sample and one prediction; run what status.sh prints, as printed ---------------------
mapfile -t ids < <("$PY" -c 'import json, sys; print("\n".join(sorted(e["id"] for e in json.load(open(sys.argv[1]))["samples"])))' "$DATA/manifest.json")
(( ${#ids[@]} >= 3 )) || die "the render holds ${#ids[@]} samples"
lost_render=${ids[0]} lost_pred=${ids[2]}      # both in shard 0 of 2: generate must wait for the render
rm -rf "${DATA:?}/$lost_render"
rm -f "$EVAL/pred/klein/$lost_pred".json "$EVAL/pred/klein/${lost_pred}"_albedo_{linear.exr,srgb.png}
say "removed render sample $lost_render and prediction klein/$lost_pred"
status=$(bash scripts/slurm/status.sh 2>&1)
code=$?
for want in "missing  $lost_render  (shard 0/2" "missing  klein/$lost_pred  (shard 0/2" "^run them again"; do
    grep -q -- "$want" <<< "$status" || { echo "$status"; die "status.sh (exit $code) does not say: $want"; }
done
(( code == 3 )) || { echo "$status"; die "status.sh exited $code, not 3"; }
block=$(sed -n '/^run them again/,/^$/p' <<< "$status" | tail -n +2)
echo "$block"
grep -q 'render\.sbatch' <<< "$block" && grep -q 'generate\.sbatch' <<< "$block" && grep -q 'finish\.sbatch' <<< "$block" \
    || die "the printed commands do not rerun render, generate and finish"
grep -q -- '--gres=gpu' <<< "$block" && die "a printed command asks for a GPU on a CPU-only study"
bash -e -c "$block" || die "the printed commands failed as printed"
wait_jobs
status=$(bash scripts/slurm/status.sh 2>&1)
code=$?
(( code == 0 )) && grep -q '^complete: ' <<< "$status" || { echo "$status"; die "after the printed commands, status.sh says incomplete (exit $code)"; }
[[ -f "$DATA/$lost_render/sample.json" && -f "$EVAL/pred/klein/$lost_pred.json" ]] || die "the lost files are not back"
say "the printed commands ran as printed; status.sh: complete again"

stop
trap - EXIT
say "PASSED in $(( $(date +%s) - START )) s (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"

#!/usr/bin/env bash
# What a study has not finished yet, by shard, and the sbatch commands that run exactly that again (run it
# on the login node; it loads no model):
#   bash scripts/slurm/status.sh                 # the study last submitted from this folder (else runs/study)
#   bash scripts/slurm/status.sh runs/big        # another study: its folder (the study.sh that submit.sh
#                                                # kept there) or a study.sh; STUDY_CONFIG=... works too
# The first line names the study it checks and how it was found. Exit 0 when the render, the probe's shards
# (merged, from the shard files there now), generate and finish's report are complete; 3 when something is
# missing (the listing names the shards, and ends with the commands that run them again, complete with the
# study's resources, partitions, account, time and logs); 2 when something needs a fix first (e.g. probe
# shards that cannot be merged: the message says why).
set -uo pipefail
caller=$PWD
cd "$(dirname "$0")/../.."
source scripts/slurm/submission.sh

if [[ -n "${1:-}" ]]; then
    given=$1
    if [[ "$given" != /* && -e "$caller/$given" ]]; then given="$caller/$given"; fi   # else: from the repository
    if [[ -d "$given" ]]; then config="$given/study.sh"; else config="$given"; fi
    if [[ ! -f "$config" ]]; then
        echo "status.sh: $config does not exist: give the folder of a study that scripts/slurm/submit.sh" \
             "submitted (it keeps the study's settings in study.sh there) or a study.sh file." >&2
        exit 2
    fi
    how="as given"
elif [[ -n "${STUDY_CONFIG:-}" ]]; then
    config=$STUDY_CONFIG how="STUDY_CONFIG"
elif [[ -n "${STUDY:-}" && -f "$STUDY/study.sh" ]]; then
    config=$STUDY/study.sh how="STUDY=$STUDY, as submitted"
elif [[ -z "${STUDY:-}" ]] && found=$(last_submission "$caller") && [[ -n "$found" ]]; then
    IFS=$'\t' read -r date config where <<< "$found"
    how="$where, on $date"
elif [[ -z "${STUDY:-}" && -f runs/study/study.sh ]]; then
    config=runs/study/study.sh how="study.sh's STUDY, as submitted"
else
    config=scripts/slurm/study.sh how="not submitted yet: the values of scripts/slurm/study.sh and the environment"
fi
export STUDY_CONFIG=$config
source "$config"
source scripts/slurm/checks.sh
echo "study $STUDY ($how; settings: $config). Another study: bash scripts/slurm/status.sh STUDY_FOLDER"
echo

check_render
echo
check_probe
echo
check_generate
echo
check_report
print_reruns
if (( CHECK_CODE == 0 )); then
    echo
    echo "complete: the render, the probe (merged), generate and the report of $STUDY are finished"
fi
exit "$CHECK_CODE"

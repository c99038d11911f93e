"""scripts/slurm/status.sh, finish.sbatch's check and the "run them again" commands they print, with stand-ins
for python, sbatch and squeue: which study is checked, the sbatch line of every rerun (the study's resources,
partitions, account, time and logs, from the same helper as submit.sh), the chain between them, GPUS_PER_TASK
0 and > 1, "merged" only when captures.npz matches the shards there now, the render hint with the study's
options, and no rerun while the study's jobs are still queued.

The stand-in python answers `-m render|evaluate generate|probe merge` with a canned listing (text, exit code)
and runs anything else (status.sh's own small checks) with the real interpreter. The real thing, on a real
SLURM, is scripts/slurm/selftest.sh (CI runs it after this suite).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLURM_DIR = ROOT / "scripts" / "slurm"

PYTHON = r"""#!{python}
import json, os, sys
args = sys.argv[1:]
if args[:1] != ["-m"]:
    os.execv(sys.executable, [sys.executable, *args])
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(["python", *args]) + "\n")
key = args[1] + (" " + args[2] if args[1] in ("evaluate", "probe") else "")
text, code = json.load(open(os.environ["FAKE_STATUS"])).get(key, ["", 0])
print(text)
sys.exit(code)
"""
SBATCH = r"""#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(["sbatch", *sys.argv[1:]]) + "\n")
n = sum(1 for line in open(os.environ["FAKE_LOG"]) if line.startswith('["sbatch"'))
print(f"{{1000 + n}};testcluster" if "--parsable" in sys.argv else f"Submitted batch job {{1000 + n}}")
"""
SQUEUE = r"""#!{python}
import os
print(os.environ.get("FAKE_SQUEUE", ""), end="")
"""
SCHEDULER_VARS = ("SLURM_", "STUDY", "DATA", "PROBE", "EVAL", "LOGS", "RANK", "WORLD_SIZE")


class Cluster:
    """A bin folder of stand-ins, a canned status per job, and the calls they received."""

    def __init__(self, tmp: Path):
        self.tmp, self.bin, self.log = tmp, tmp / "bin", tmp / "calls.log"
        self.bin.mkdir()
        for name, text in (("python", PYTHON), ("sbatch", SBATCH), ("squeue", SQUEUE)):
            (self.bin / name).write_text(text.format(python=sys.executable))
            (self.bin / name).chmod(0o755)
        self.status_file = tmp / "status.json"
        self.canned({})

    def canned(self, status: dict) -> None:
        self.status_file.write_text(json.dumps(status))

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCHEDULER_VARS)}
        env.update(PATH=f"{self.bin}:{os.environ['PATH']}", FAKE_LOG=str(self.log), FAKE_STATUS=str(self.status_file),
                   PYTHON=str(self.bin / "python"), XDG_STATE_HOME=str(self.tmp / "state"))
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, argv: list, cwd: Path = ROOT, code: int | None = 0, **env) -> subprocess.CompletedProcess:
        p = subprocess.run(argv, cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=120)
        if code is not None:
            assert p.returncode == code, f"{argv} exited {p.returncode}, not {code}:\n{p.stdout}\n{p.stderr}"
        return p

    def calls(self, kind: str | None = None) -> list[list[str]]:
        calls = [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []
        return [c[1:] for c in calls if kind is None or c[0] == kind]

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)


SETTINGS = dict(RENDER_TASKS=4, PROBE_TASKS=2, GEN_TASKS=4, GPUS_PER_TASK=2, ACCOUNT="proj1", PARTITION_GPU="gpu",
                PARTITION_CPU="cpu", N_SCENES=12, CPUS_RENDER=3, MEM_RENDER="5G", TIME_RENDER="01:00:00")


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    return Cluster(tmp_path)


def submit(cluster: Cluster, study: Path, cwd: Path, **settings) -> dict[str, list[str]]:
    """submit.sh through the stand-in sbatch: {step: its sbatch arguments}."""
    cluster.clear()
    cluster.run(["bash", str(SLURM_DIR / "submit.sh")], cwd=cwd, STUDY=study, **{**SETTINGS, **settings})
    jobs = {Path(c[-1]).stem: c for c in cluster.calls("sbatch")}
    assert list(jobs) == ["render", "probe", "merge", "generate", "finish"]
    cluster.clear()
    return jobs


def block(stdout: str) -> str:
    """The lines status.sh prints under "run them again", as printed."""
    lines = stdout.split("\n")
    start = next(i for i, x in enumerate(lines) if x.startswith("run them again"))
    out = []
    for x in lines[start + 1:]:
        if not x.strip():
            break
        out.append(x)
    return "\n".join(out)


def resources(argv: list[str]) -> list[str]:
    """An sbatch command's options without what differs between the first submission and a rerun."""
    return [a for a in argv[:-1] if not a.startswith(("--array=", "--dependency=", "--export=", "--parsable"))]


def opt(argv: list[str], key: str) -> str | None:
    vals = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{key}=")]
    return vals[0] if vals else None


def make_study(study: Path, merged: bool = False) -> None:
    (study / "render").mkdir(parents=True, exist_ok=True)
    (study / "render" / "manifest.json").write_text("{}")
    (study / "probe" / "shards").mkdir(parents=True, exist_ok=True)
    if merged:
        files = []
        for k in range(2):
            f = study / "probe" / "shards" / f"partial-{k}-of-2.npz"
            f.write_bytes(b"x")
            files.append({"file": str(f)})
        (study / "probe" / "config.json").write_text(json.dumps({"shards": files}))
        captures = study / "probe" / "captures.npz"
        captures.write_bytes(b"x")
        past = time.time() - 60
        for f in (study / "probe" / "shards").iterdir():
            os.utime(f, (past, past))


COMPLETE = {"render": ["complete: all 50 items of render are finished", 0],
            "evaluate generate": ["complete: all 150 items of evaluate generate are finished", 0],
            "probe merge": ["complete: all 12 items of probe are finished\nready: `python -m probe merge P` writes", 0]}


def incomplete(shards: str, n: int) -> list:
    return [f"missing  x  (shard ...)\nincomplete: 3 of 50 missing, in shard(s) {shards} of {n}\n"
            f"run them again (finished items are skipped): `bash scripts/slurm/status.sh` prints the sbatch commands "
            f"of a submitted study; or this command without --status and with --shard K/{n} for each K in {shards}", 3]


def test_reruns_are_complete_chained_and_runnable_as_printed(cluster, tmp_path):
    """Render shards 1,3 of 4, probe shard 2 of 4 and generate shards 1,2,5 of 8 missing (2 GPUs per task):
    the printed lines, run as printed from another folder, submit render tasks 1,3 (SHARD_COUNT=4), probe task 1
    and generate tasks 0,1,2 of 2 and 4 (shard k ran in task k / 2) after the render, the merge after the probe,
    finish after both, each with exactly the options submit.sh gave that step."""
    here = tmp_path / "work"
    here.mkdir()
    study = tmp_path / "study"
    first = submit(cluster, study, here)
    make_study(study)
    cluster.canned({"render": incomplete("1,3", 4), "probe merge": incomplete("2", 4),
                    "evaluate generate": incomplete("1,2,5", 8)})
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh")], cwd=here, code=3)
    assert p.stdout.startswith(f"study {study} (the last study submitted from this folder")
    assert "or this command" not in p.stdout              # the jobs' own generic hints give way to the commands
    assert "in shard(s) 1,2,5 of 8" in p.stdout and "generate shard k ran in array task k / 2" in p.stdout
    status_calls = cluster.calls("python")
    assert ["-m", "evaluate", "generate", "--data", f"{study}/render", "--out", f"{study}/evaluate", "--status", "8"] \
        in status_calls
    lines = block(p.stdout)
    assert lines.splitlines()[0].strip() == f"cd {ROOT}"

    cluster.clear()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(["bash", "-e", "-c", lines], cwd=elsewhere, env=cluster.env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    rerun = {Path(c[-1]).stem: c for c in cluster.calls("sbatch")}
    assert list(rerun) == ["render", "probe", "merge", "generate", "finish"]
    ids = {step: str(1001 + i) for i, step in enumerate(rerun)}
    for step, argv in rerun.items():
        assert resources(argv) == resources(first[step]), step          # one helper builds both
        assert argv[-1] == f"scripts/slurm/{step}.sbatch"
        config = f"STUDY_CONFIG={study}/study.sh"
        assert opt(argv, "export").split(",")[:2] == ["ALL", config], argv
    assert opt(rerun["render"], "array") == "1,3" and "SHARD_COUNT=4" in opt(rerun["render"], "export")
    assert opt(rerun["render"], "dependency") is None
    assert opt(rerun["probe"], "array") == "1" and "SHARD_COUNT=2" in opt(rerun["probe"], "export")
    assert opt(rerun["generate"], "array") == "0,1,2" and "SHARD_COUNT=4" in opt(rerun["generate"], "export")
    assert opt(rerun["probe"], "dependency") == opt(rerun["generate"], "dependency") == f"afterok:{ids['render']}"
    assert opt(rerun["merge"], "dependency") == f"afterok:{ids['probe']}"
    assert opt(rerun["finish"], "dependency") == f"afterok:{ids['merge']}:{ids['generate']}"
    assert opt(rerun["probe"], "gres") == "gpu:2" and opt(rerun["probe"], "partition") == "gpu"
    assert opt(rerun["render"], "cpus-per-task") == "3" and opt(rerun["render"], "mem") == "5G"
    assert opt(rerun["render"], "time") == "01:00:00" and opt(rerun["render"], "account") == "proj1"
    assert opt(rerun["render"], "output") == f"{study}/logs/%x-%A_%a.out"
    assert opt(rerun["merge"], "output") == f"{study}/logs/%x-%j.out"
    assert opt(rerun["render"], "chdir") == str(ROOT)


def test_cpu_only_study_asks_for_no_gpu_and_counts_its_shards(cluster, tmp_path):
    """GPUS_PER_TASK=0: probe and generate clear their templates' GPU request (--gres=none) and go to the CPU
    partition, in submit.sh and in every printed rerun; --status gets the number of shards (GEN_TASKS)."""
    study = tmp_path / "study"
    first = submit(cluster, study, ROOT, GPUS_PER_TASK=0, PARTITION_GPU="")
    for step, argv in first.items():
        assert not any(a.startswith("--gres=gpu") for a in argv), argv
    for step in ("probe", "generate"):
        assert opt(first[step], "gres") == "none" and opt(first[step], "partition") == "cpu"
    make_study(study)
    cluster.canned({**COMPLETE, "evaluate generate": incomplete("3", 4)})
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    assert ["-m", "evaluate", "generate", "--data", f"{study}/render", "--out", f"{study}/evaluate", "--status", "4"] \
        in cluster.calls("python")
    lines = block(p.stdout)
    assert "--gres=gpu" not in lines and "--gres=none" in lines
    assert "--array=3 --export=ALL,STUDY_CONFIG=" in lines and ",SHARD_COUNT=4 scripts/slurm/generate.sbatch" in lines


def test_status_finds_the_study_submitted_from_here(cluster, tmp_path):
    """No flags: the study last submitted from this folder, else the last one submitted from anywhere; a study
    folder or study.sh given as the argument (relative to where status.sh runs); the first line says which."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    submit(cluster, tmp_path / "study1", a)
    submit(cluster, tmp_path / "study2", b)
    cluster.canned(COMPLETE)
    for study in ("study1", "study2"):
        make_study(tmp_path / study)
    first = {d: cluster.run(["bash", str(SLURM_DIR / "status.sh")], cwd=d, code=None).stdout.split("\n")[0]
             for d in (a, b, tmp_path)}
    assert first[a].startswith(f"study {tmp_path}/study1 (the last study submitted from this folder")
    assert first[b].startswith(f"study {tmp_path}/study2 (the last study submitted from this folder")
    assert first[tmp_path].startswith(f"study {tmp_path}/study2 (the last study submitted (from {b})")
    assert "Another study: bash scripts/slurm/status.sh STUDY_FOLDER" in first[a]
    given = cluster.run(["bash", str(SLURM_DIR / "status.sh"), "study1"], cwd=tmp_path, code=None).stdout
    assert given.startswith(f"study {tmp_path}/study1 (as given; settings: {tmp_path}/study1/study.sh)")
    env_given = cluster.run(["bash", str(SLURM_DIR / "status.sh")], cwd=a, code=None,
                            STUDY_CONFIG=tmp_path / "study2" / "study.sh").stdout
    assert env_given.startswith(f"study {tmp_path}/study2 (STUDY_CONFIG;")
    bad = cluster.run(["bash", str(SLURM_DIR / "status.sh"), "nothing-here"], cwd=tmp_path, code=2)
    assert "nothing-here" in bad.stderr and "submit.sh" in bad.stderr and not bad.stdout


def test_merged_only_when_captures_match_the_shards_there_now(cluster, tmp_path):
    study = tmp_path / "study"
    submit(cluster, study, ROOT)
    make_study(study, merged=True)
    (study / "evaluate").mkdir()
    (study / "evaluate" / "report.md").write_text("report")
    cluster.canned(COMPLETE)
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=0)
    assert f"probe: merged ({study}/probe/captures.npz, from the 2 shard file(s) there now)" in p.stdout
    assert "ready: " not in p.stdout and p.stdout.rstrip().endswith(f"report of {study} are finished")

    shard = study / "probe" / "shards" / "partial-1-of-2.npz"
    shard.write_bytes(b"y")                                     # a shard ran again after the merge
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    assert "probe: not merged" in p.stdout and "rewritten since: partial-1-of-2.npz" in p.stdout
    assert "probe: merged" not in p.stdout
    lines = block(p.stdout)
    assert "merge.sbatch" in lines and "probe.sbatch" not in lines and "render.sbatch" not in lines
    assert "--dependency=afterok:${merge_job%;*} " in lines                 # finish waits for the merge

    past = time.time() - 60
    os.utime(shard, (past, past))
    (study / "probe" / "shards" / "partial-2-of-3.npz").write_bytes(b"z")   # a shard file the merge did not use
    shard.unlink()
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    assert "gone since: partial-1-of-2.npz" in p.stdout and "not in it: partial-2-of-3.npz" in p.stdout


def test_render_hint_carries_the_study_options(cluster, tmp_path):
    """The probe's merge check cannot rebuild its design from an incomplete render: its hint to finish the render
    gets the study's scene and size options, and the probe counts as waiting for the render (exit 3, not 2)."""
    study = tmp_path / "study"
    submit(cluster, study, ROOT, RECOLOR=1, RESOLUTION=64, SPP=8)
    make_study(study)
    cluster.canned({**COMPLETE, "render": incomplete("0", 4),
                    "probe merge": [f"error: {study}/render: the render is incomplete; finish it with "
                                    f"`python -m render --out {study}/render` (finished samples are kept).", 2]})
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    assert (f"`python -m render --generate 12 --seed 1 --recolor 1 --resolution 64 --samples 8 --out {study}/render`"
            in p.stdout)
    assert "once it is complete" in p.stdout
    lines = block(p.stdout)
    assert "render.sbatch" in lines and "probe.sbatch" not in lines


def test_probe_shards_that_cannot_be_merged_exit_2(cluster, tmp_path):
    study = tmp_path / "study"
    submit(cluster, study, ROOT)
    make_study(study)
    cluster.canned({**COMPLETE, "probe merge": ["cannot merge: two configurations", 2]})
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=2)
    assert "cannot merge: two configurations" in p.stdout


def test_no_rerun_while_the_study_is_still_queued(cluster, tmp_path):
    study = tmp_path / "study"
    submit(cluster, study, ROOT)
    make_study(study)
    cluster.canned({**COMPLETE, "render": incomplete("1", 4)})
    queued = f"17_[1-3]|rp-render|PENDING|Priority|{study}/logs/%x-%A_%a.out\n"
    other = f"18|rp-merge|PENDING|Dependency|{tmp_path}/other/logs/%x-%j.out\n"
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3, FAKE_SQUEUE=queued + other)
    assert "still in the queue (squeue): 17_[1-3] rp-render PENDING (Priority)." in p.stdout
    assert "18" not in p.stdout.split("still in the queue")[1] and "run them again" not in p.stdout
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3, FAKE_SQUEUE=other)
    assert "still in the queue" not in p.stdout and "--array=1 " in block(p.stdout)


def test_finish_report_must_be_newer_than_what_it_reads(cluster, tmp_path):
    study = tmp_path / "study"
    submit(cluster, study, ROOT)
    make_study(study, merged=True)
    cluster.canned(COMPLETE)
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    assert f"finish: no {study}/evaluate/report.md yet" in p.stdout
    lines = block(p.stdout).splitlines()
    assert len(lines) == 2 and "--dependency" not in lines[1] and lines[1].endswith("scripts/slurm/finish.sbatch")
    report = study / "evaluate" / "report.md"
    (study / "evaluate" / "pred" / "klein").mkdir(parents=True)
    report.write_text("report")
    past = time.time() - 60
    for f in (study / "render" / "manifest.json", study / "probe" / "captures.npz", report):
        os.utime(f, (past, past))
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=0)
    assert f"finish: {report} is up to date" in p.stdout and "run them again" not in p.stdout
    (study / "evaluate" / "pred" / "klein" / "s.json").write_text("{}")
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    assert f"is older than {study}/evaluate/pred/klein/s.json" in p.stdout


def test_finish_job_stops_with_the_commands_that_complete_the_study(cluster, tmp_path):
    """finish.sbatch checks render and generate first; when something is missing it exits 3 and its log holds
    the complete commands, ending with the finish job itself after them."""
    study = tmp_path / "study"
    submit(cluster, study, ROOT)
    make_study(study)
    cluster.canned({**COMPLETE, "evaluate generate": incomplete("6", 8)})
    p = cluster.run(["bash", str(SLURM_DIR / "finish.sbatch")], code=3, STUDY_CONFIG=study / "study.sh",
                    SLURM_SUBMIT_DIR=ROOT, SLURM_JOB_ID=77)
    lines = block(p.stdout)
    assert "--array=3 " in lines and "generate.sbatch" in lines
    assert lines.splitlines()[-1].strip().endswith("finish.sbatch") and "afterok:${generate_job%;*}" in lines
    assert [c[1] for c in cluster.calls("python")] == ["render", "evaluate"]        # no score, link or report


def test_printed_lines_are_shell_words(cluster, tmp_path):
    """Options with spaces or shell characters are quoted: the printed line parses back to the same words."""
    study = tmp_path / "my study"
    submit(cluster, study, ROOT, ACCOUNT="a b", TIME_FINISH="1-00:00:00")
    make_study(study)
    cluster.canned(COMPLETE)
    p = cluster.run(["bash", str(SLURM_DIR / "status.sh"), str(study)], code=3)
    (line,) = [x for x in block(p.stdout).splitlines() if "finish.sbatch" in x]
    words = shlex.split(line)
    assert "--account=a b" in words and f"--output={study}/logs/%x-%j.out" in words and "--time=1-00:00:00" in words

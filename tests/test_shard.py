"""`--shard auto`: K/N from a SLURM array, torchrun, both, or neither (render.shard, contract C4),
and the GPU that torchrun's LOCAL_RANK picks under `--device auto` (probe.klein.model.resolve_device)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from render.shard import Shard

ROOT = Path(__file__).resolve().parent.parent


def auto(**env) -> Shard:
    return Shard.parse("auto", environ={k: str(v) for k, v in env.items()}, announce=False)


# ------------------------------------------------------------------------------------ explicit
def test_explicit_and_default_are_unchanged():
    assert Shard.parse(None) == Shard(0, 1) and Shard.parse("") == Shard(0, 1)
    assert Shard.parse("2/8") == Shard(2, 8)
    assert (Shard.parse("2/8").index, Shard.parse("2/8").count) == (2, 8)
    assert str(Shard.parse("2/8")) == "2/8"
    assert Shard.parse("2/8").source == "--shard 2/8"
    assert Shard.parse(None).source.startswith("whole run")
    for bad in ("3/2", "-1/2", "0/0", "1", "a/b", "1/2/3", "autox"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_source_is_not_part_of_equality_but_is_recorded():
    a, b = Shard.parse("1/3"), auto(SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_COUNT=3)
    assert a == b and a.source != b.source
    d = b.as_dict()
    assert d["index"] == 1 and d["count"] == 3 and "SLURM_ARRAY_TASK_ID=1" in d["source"]


def test_no_scheduler_is_the_whole_run():
    s = auto()
    assert (s.index, s.count) == (0, 1) and "whole run" in s.source
    # unrelated SLURM variables (a plain sbatch job, not an array) do not make a shard
    s = auto(SLURM_JOB_ID=77, SLURM_PROCID=0, SLURM_NTASKS=1, MASTER_ADDR="x")
    assert (s.index, s.count) == (0, 1)


# ---------------------------------------------------------------------------------------- SLURM
@pytest.mark.parametrize("env,expect", [
    (dict(SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=3), (0, 3)),
    (dict(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=3), (2, 3)),
    (dict(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=7), (2, 8)),
    # --array=1-8: ids start at 1, shards at 0
    (dict(SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_MAX=8, SLURM_ARRAY_TASK_COUNT=8), (0, 8)),
    (dict(SLURM_ARRAY_TASK_ID=8, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_MAX=8, SLURM_ARRAY_TASK_COUNT=8), (7, 8)),
    # --array=0-30:10 -> ids 0, 10, 20, 30
    (dict(SLURM_ARRAY_TASK_ID=20, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=30, SLURM_ARRAY_TASK_STEP=10,
          SLURM_ARRAY_TASK_COUNT=4), (2, 4)),
    # a throttled array (--array=0-9%2) has the same variables as 0-9
    (dict(SLURM_ARRAY_TASK_ID=9, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=9, SLURM_ARRAY_TASK_COUNT=10,
          SLURM_ARRAY_TASK_STEP=1), (9, 10)),
    (dict(SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=1), (0, 1)),
])
def test_slurm_array(env, expect):
    s = auto(**env)
    assert (s.index, s.count) == expect
    assert s.source.startswith("--shard auto: SLURM array") and f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']}" in s.source


def test_every_task_of_an_array_gets_a_distinct_shard_and_the_union_is_everything():
    ids = [f"s{i:02d}" for i in range(23)]
    for lo, hi, step in ((0, 2, 1), (1, 8, 1), (0, 30, 10), (5, 5, 1)):
        tids = range(lo, hi + 1, step)
        shards = [auto(SLURM_ARRAY_TASK_ID=t, SLURM_ARRAY_TASK_MIN=lo, SLURM_ARRAY_TASK_MAX=hi,
                       SLURM_ARRAY_TASK_STEP=step, SLURM_ARRAY_TASK_COUNT=len(tids)) for t in tids]
        assert sorted(s.index for s in shards) == list(range(len(tids)))
        parts = [s.select(ids) for s in shards]
        assert sorted(sum(parts, [])) == ids


@pytest.mark.parametrize("env,words", [
    (dict(SLURM_ARRAY_TASK_ID=3), "neither SLURM_ARRAY_TASK_COUNT"),                       # partial: no count
    (dict(SLURM_ARRAY_TASK_COUNT=4), "SLURM_ARRAY_TASK_ID is not"),                          # partial: no id
    (dict(SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=3), "SLURM_ARRAY_TASK_ID is not"),
    (dict(SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_MIN=0), "only one of SLURM_ARRAY_TASK_MIN"),
    (dict(SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_MAX=4, SLURM_ARRAY_TASK_COUNT=5), "only one of"),
    (dict(SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_COUNT=3), "outside 0..2"),               # ids start at 1?
    (dict(SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=0), "outside"),
    (dict(SLURM_ARRAY_TASK_ID=9, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=7), "not one of the array's ids"),
    (dict(SLURM_ARRAY_TASK_ID=4, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_MAX=9, SLURM_ARRAY_TASK_COUNT=3),
     "not one evenly stepped range"),                                                      # --array=1,4,9
    (dict(SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=30, SLURM_ARRAY_TASK_STEP=10),
     "not one of the array's ids"),
    (dict(SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=25, SLURM_ARRAY_TASK_STEP=10),
     "multiple of STEP"),
    (dict(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_MIN=5, SLURM_ARRAY_TASK_MAX=1), "MIN <= MAX"),
    (dict(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=4, SLURM_ARRAY_TASK_STEP=2), "SLURM_ARRAY_TASK_STEP=2"),
    (dict(SLURM_ARRAY_TASK_ID="two", SLURM_ARRAY_TASK_COUNT=4), "not an integer"),
    (dict(SLURM_ARRAY_TASK_ID=-1, SLURM_ARRAY_TASK_COUNT=4), "negative"),
])
def test_slurm_partial_or_inconsistent_is_one_paragraph(env, words):
    with pytest.raises(ValueError) as e:
        auto(**env)
    msg = str(e.value)
    assert words in msg, msg
    assert "\n" not in msg and msg.startswith("--shard auto:")
    assert "--shard K/N" in msg                       # says how to get out of it


def test_empty_variables_count_as_unset():
    assert auto(SLURM_ARRAY_TASK_ID="", RANK=" ") == Shard(0, 1)


# ------------------------------------------------------------------------------------- torchrun
@pytest.mark.parametrize("rank,world", [(0, 1), (0, 2), (1, 2), (5, 8)])
def test_torchrun(rank, world):
    s = auto(RANK=rank, WORLD_SIZE=world, LOCAL_RANK=rank % 4, LOCAL_WORLD_SIZE=min(world, 4))
    assert (s.index, s.count) == (rank, world)
    assert s.source.startswith("--shard auto: torchrun") and f"RANK={rank}" in s.source


def test_torchrun_without_local_variables_is_fine():
    assert auto(RANK=1, WORLD_SIZE=3) == Shard(1, 3)


@pytest.mark.parametrize("env,words", [
    (dict(RANK=1), "RANK and WORLD_SIZE must both"),
    (dict(WORLD_SIZE=2), "RANK and WORLD_SIZE must both"),
    (dict(LOCAL_RANK=0), "partial torchrun variables"),
    (dict(RANK=2, WORLD_SIZE=2), "outside 0..1"),
    (dict(RANK=0, WORLD_SIZE=0), "outside"),
    (dict(RANK=0, WORLD_SIZE=2, LOCAL_RANK=1), "LOCAL_RANK=1 is larger than RANK=0"),
    (dict(RANK=3, WORLD_SIZE=4, LOCAL_RANK=2, LOCAL_WORLD_SIZE=2), "outside 0..1"),
    (dict(RANK=0, WORLD_SIZE=2, LOCAL_WORLD_SIZE=4), "exceeds WORLD_SIZE"),
    (dict(RANK="x", WORLD_SIZE=2), "not an integer"),
])
def test_torchrun_partial_or_inconsistent(env, words):
    with pytest.raises(ValueError) as e:
        auto(**env)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert "torchrun --nproc-per-node" in str(e.value)


# ----------------------------------------------------------------------------- both, nested
def test_torchrun_inside_an_array_task_nests_the_shards():
    ids = [f"s{i:02d}" for i in range(31)]
    shards = [auto(SLURM_ARRAY_TASK_ID=t, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_MAX=3, SLURM_ARRAY_TASK_COUNT=3,
                   RANK=r, WORLD_SIZE=2, LOCAL_RANK=r) for t in (1, 2, 3) for r in (0, 1)]
    assert [(s.index, s.count) for s in shards] == [(k, 6) for k in range(6)]
    assert "SLURM array task 0 of 3 x torchrun rank 1 of 2" in shards[1].source
    assert sorted(sum((s.select(ids) for s in shards), [])) == ids


def test_errors_in_either_source_are_reported_even_when_the_other_is_fine():
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE"):
        auto(SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=2, RANK=0)
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_COUNT"):
        auto(SLURM_ARRAY_TASK_ID=0, RANK=0, WORLD_SIZE=2)


# ------------------------------------------------------------------------ printing, os.environ
def test_auto_prints_the_resolved_shard_once(capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_ARRAY_TASK_STEP"):
        monkeypatch.delenv(v, raising=False)
    first = Shard.parse("auto")
    again = Shard.parse("AUTO")
    assert first == again == Shard(1, 3)
    err = capsys.readouterr().err
    assert err.count("shard 1/3 (--shard auto: SLURM array (SLURM_ARRAY_TASK_ID=4") == 1, err
    Shard.parse("1/3")                                   # explicit shards print nothing
    assert capsys.readouterr().err == ""


def test_render_cli_bad_auto_environment_is_exit_2_without_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SLURM_ARRAY_TASK_ID": "3"}
    out = tmp_path / "none"
    proc = subprocess.run([sys.executable, "-m", "render", "--only", "red_cube_table", "--shard", "auto", "--out",
                           str(out), "--dry-run"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "SLURM_ARRAY_TASK_COUNT" in proc.stderr
    assert not out.exists()


def test_render_cli_dry_run_reports_the_resolved_shard(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RANK": "1", "WORLD_SIZE": "2"}
    proc = subprocess.run([sys.executable, "-m", "render", "--only", "red_cube_table", "--shard", "auto", "--out",
                           str(tmp_path / "d"), "--dry-run"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "shard 1/2 (--shard auto: torchrun (RANK=1, WORLD_SIZE=2))" in proc.stderr
    from render.pipeline import plan_samples
    from render.scene import load_scenes

    expect = [j.id for j in plan_samples(load_scenes(ROOT / "scenes", only=["red_cube_table"]), None, "1/2")]
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == expect


def test_evaluate_cli_bad_auto_environment_fails_before_loading_a_model(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RANK": "0"}
    proc = subprocess.run([sys.executable, "-m", "evaluate", "generate", "--model", "tiny", "--shard", "auto",
                           "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "ev")], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "RANK and WORLD_SIZE" in proc.stderr
    assert not (tmp_path / "ev").exists()


# ----------------------------------------------------------------------------- LOCAL_RANK -> GPU
@pytest.mark.parametrize("local,n_gpu,expect", [(None, 4, "cuda"), ("0", 4, "cuda:0"), ("3", 4, "cuda:3"),
                                                ("3", 1, "cuda:0"),   # one visible GPU per rank
                                                ("5", 4, "cuda:1"), ("", 2, "cuda")])
def test_local_rank_picks_the_gpu_under_device_auto(monkeypatch, local, n_gpu, expect):
    import torch

    from probe.klein.model import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpu)
    if local is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local)
    assert resolve_device("auto") == expect
    assert resolve_device("cuda:2") == "cuda:2"          # an explicit device is never changed


def test_local_rank_without_cuda_is_cpu(monkeypatch):
    import torch

    from probe.klein.model import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == "cpu"

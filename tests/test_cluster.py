"""Past one machine, on CPU: a simulated SLURM array of 3 tasks and `torchrun --nproc-per-node 2`, both with
`--shard auto`, for `python -m render`, `python -m probe run` (then `probe merge`) and `python -m evaluate
generate`, each checked against the unsharded run (same files, same values); the `--status N` listing of what
is missing; and the sbatch templates of scripts/slurm/ (bash -n, every job's command line accepted by that
job's own argparse parser).

Each process of an evaluate run gets OMP_NUM_THREADS=1, and the unsharded run uses one thread too: a
float32 matmul on another thread count rounds differently, which can move an 8-bit pixel by one level.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"
SCHEDULER_VARS = ("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "TORCHELASTIC_", "GROUP_RANK", "ROLE_")
needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason=f"torchrun not installed beside {sys.executable}")

# Runs `python -m <module> ...` and logs, per process, every file it moves into place (os.replace: the atomic
# writes) and every file it opens for writing under its final name (a non-atomic write).
WRITE_LOGGER = r"""
import builtins, io, os, runpy, sys
_log = open(os.environ["WRITE_LOG"], "a")
_replace, _open = os.replace, io.open
def _note(kind, path):
    _log.write(f"{kind}\t{os.path.abspath(os.fspath(path))}\n"); _log.flush()
def replace(src, dst, *a, **k):
    _replace(src, dst, *a, **k)
    _note("atomic", dst)
def open_(file, mode="r", *a, **k):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        if ".tmp" not in os.path.basename(os.fspath(file)):
            _note("direct", file)
    return _open(file, mode, *a, **k)
os.replace, io.open, builtins.open = replace, open_, open_
module = sys.argv[1]
sys.argv = [f"python -m {module}", *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def clean_env(**extra) -> dict:
    """This environment without any scheduler variables (the suite may itself run under SLURM), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCHEDULER_VARS)}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def slurm_array(module: str, args: list[str], tmp: Path, env: dict, first: int = 1, n: int = 3,
                timeout: float = 300) -> dict[int, str]:
    """Run the n tasks of `sbatch --array=first-(first+n-1)` at once, as Slurm sets their variables.

    Returns {task id: stderr}; each task's writes are logged to tmp/writes.<task id>."""
    procs = {}
    script = tmp / "write_logger.py"
    script.write_text(WRITE_LOGGER)
    for tid in range(first, first + n):
        task_env = clean_env(**env, SLURM_JOB_ID=4242, SLURM_ARRAY_JOB_ID=4242, SLURM_ARRAY_TASK_ID=tid,
                             SLURM_ARRAY_TASK_COUNT=n, SLURM_ARRAY_TASK_MIN=first,
                             SLURM_ARRAY_TASK_MAX=first + n - 1, SLURM_ARRAY_TASK_STEP=1,
                             WRITE_LOG=tmp / f"writes.{tid}")
        procs[tid] = subprocess.Popen([sys.executable, str(script), module, *args, "--shard", "auto"], cwd=ROOT,
                                      env=task_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errs = {}
    for tid, p in procs.items():
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"array task {tid} failed ({p.returncode}):\n{err[-3000:]}"
        errs[tid] = err
    return errs


def assert_quiet(stderr: str) -> None:
    """`--quiet`: no progress bar at all, the libraries' own (pipeline components, weights, tiny shards) included."""
    for bar in ("Loading pipeline components", "Loading weights", "Writing model shards", "it/s]", "%|"):
        assert bar not in stderr, f"{bar!r} in the log of a --quiet run:\n{stderr[-2000:]}"


def torchrun(module: str, args: list[str], env: dict, nproc: int = 2, timeout: float = 300) -> str:
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(nproc), "-m", module, *args, "--shard", "auto"]
    p = subprocess.run(cmd, cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}"
    return p.stderr


def read_writes(tmp: Path, under: Path) -> dict[str, dict[str, set]]:
    """{task: {"atomic": paths, "direct": paths}} for files under `under`, from the write logs."""
    out = {}
    for log in sorted(tmp.glob("writes.*")):
        d = {"atomic": set(), "direct": set()}
        for line in log.read_text().splitlines():
            kind, path = line.split("\t", 1)
            if Path(path).is_relative_to(under) and not Path(path).name.startswith("."):  # not locks, temp files
                d[kind].add(str(Path(path).relative_to(under)))
        out[log.suffix[1:]] = d
    return out


def files(root: Path) -> set[str]:
    """Output files, without locks and leftovers of atomic writes."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


# ----------------------------------------------------------------------------------------- render
RENDER_ARGS = ["--only", "cornell_box,red_cube_table", "--resolution", "24", "--samples", "2", "--no-progress"]


@pytest.fixture(scope="module")
def render_whole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cluster-render") / "whole"
    p = subprocess.run([sys.executable, "-m", "render", *RENDER_ARGS, "--out", str(out)], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return out


def assert_same_render(whole: Path, sharded: Path) -> None:
    from render.dataset import load_manifest, load_sample

    assert files(sharded) == files(whole)
    a, b = load_manifest(whole), load_manifest(sharded)
    assert [e["id"] for e in b["samples"]] == [e["id"] for e in a["samples"]] and len(a["samples"]) == 5
    volatile = {"files", "render_seconds", "stats", "identity_error"}   # Cycles re-renders differ by ~1e-5
    for ea, eb in zip(a["samples"], b["samples"]):
        assert {k: v for k, v in ea.items() if k not in volatile} == {k: v for k, v in eb.items() if k not in volatile}
        sa, sb = load_sample(whole, ea["id"]), load_sample(sharded, eb["id"])
        np.testing.assert_array_equal(sa.albedo_linear, sb.albedo_linear)
        np.testing.assert_array_equal(sa.mask, sb.mask)
        np.testing.assert_array_equal(sa.object_index, sb.object_index)
        assert np.abs(sa.image_linear - sb.image_linear).max() < 1e-3 * max(1.0, float(sa.image_linear.max()))
    assert {k: v for k, v in a.items() if k != "samples"} == {k: v for k, v in b.items() if k != "samples"}


def test_render_slurm_array_of_3_equals_unsharded(render_whole, tmp_path):
    out = tmp_path / "slurm"
    errs = slurm_array("render", [*RENDER_ARGS, "--out", str(out)], tmp_path, {})
    for k, tid in enumerate(sorted(errs)):                  # --array=1-3: tasks 1, 2, 3 are shards 0, 1, 2
        assert f"shard {k}/3 (--shard auto: SLURM array (SLURM_ARRAY_TASK_ID={tid}" in errs[tid]
    assert_same_render(render_whole, out)
    writes = read_writes(tmp_path, out)
    assert len(writes) == 3 and all(not w["direct"] for w in writes.values()), writes   # every write atomic
    # each sample folder is written by exactly one task
    owners = {}
    for task, w in writes.items():
        for f in w["atomic"]:
            if "__" in f.split("/")[0]:
                owners.setdefault(f.split("/")[0], set()).add(task)
    assert len(owners) == 5 and all(len(t) == 1 for t in owners.values()), owners


@needs_torchrun
def test_render_torchrun_2_processes_equals_unsharded(render_whole, tmp_path):
    out = tmp_path / "torchrun"
    err = torchrun("render", [*RENDER_ARGS, "--out", str(out)], {})
    for r in (0, 1):
        assert f"shard {r}/2 (--shard auto: torchrun (RANK={r}, WORLD_SIZE=2" in err
    assert_same_render(render_whole, out)


def test_render_status_names_the_shards_to_rerun(render_whole, tmp_path):
    from render.__main__ import main

    out = tmp_path / "status"
    shutil.copytree(render_whole, out)
    args = ["--only", "cornell_box,red_cube_table", "--out", str(out), "--status", "3"]
    assert main(args) == 0
    # sorted ids: cornell_box__ceiling_light (0), cornell_box__warm_point (1), red_cube_table__softbox_overhead (2),
    # red_cube_table__sun_left (0), red_cube_table__warm_spot_right (1)
    (out / "red_cube_table__softbox_overhead" / "sample.json").unlink()
    exr = out / "cornell_box__warm_point" / "albedo_linear.exr"
    exr.write_bytes(exr.read_bytes()[:50])
    return_code, text = _capture(main, args)
    assert return_code == 3
    assert "missing  red_cube_table__softbox_overhead  (shard 2/3: not rendered)" in text
    assert "cornell_box__warm_point  (shard 1/3:" in text and "albedo_linear.exr: size" in text
    assert "in shard(s) 1,2 of 3" in text
    assert "`bash scripts/slurm/status.sh` prints the sbatch commands" in text      # complete, with the resources
    assert "without --status and with --shard K/3 for each K in 1,2" in text and "<study>" not in text
    assert main(["--only", "cornell_box,red_cube_table", "--out", str(out), "--status", "0"]) == 2


def _capture(fn, argv) -> tuple[int, str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = fn(argv)
    return code, buf.getvalue()


# ------------------------------------------------------------------------------------------ probe
PROBE_ARGS = ["run", "--model", "tiny", "--device", "auto", "--limit", "5", "--steps", "2", "--capture-steps", "0,1",
              "--quiet"]
PROBE_STATS = ["--n-perm", "200", "--n-boot", "50", "--n-splits", "10", "--no-report"]


def probe_in_process(argv: list) -> int:
    """`python -m probe ARGV` here, on one thread like every subprocess (OMP_NUM_THREADS=1)."""
    import torch

    from probe.__main__ import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def probe_whole(tiny_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cluster-probe") / "whole"
    assert probe_in_process([*PROBE_ARGS, *PROBE_STATS, "--out", out]) == 0
    return out


def merged_equals_unsharded(whole: Path, out: Path, n: int, source: str) -> None:
    """`probe merge OUT` (the shards' common folder) gives the unsharded run's captures and statistics."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_probe_shards import assert_same_captures

    assert probe_in_process(["merge", out, *PROBE_STATS]) == 0
    assert_same_captures(whole, out)
    assert (out / "units.csv").read_text() == (whole / "units.csv").read_text()
    config = json.loads((out / "config.json").read_text())
    assert [s["shard"]["index"] for s in config["shards"]] == list(range(n))
    assert all(s["shard"]["count"] == n and s["shard"]["source"].startswith(source) for s in config["shards"])


def test_probe_slurm_array_of_3_then_merge_equals_unsharded(probe_whole, tiny_cache, tmp_path):
    out = tmp_path / "slurm"
    errs = slurm_array("probe", [*PROBE_ARGS, "--out", str(out)], tmp_path, {"RAY_PLANTAIN_CACHE": tiny_cache})
    for k, tid in enumerate(sorted(errs)):
        assert f"shard {k}/3 (--shard auto: SLURM array (SLURM_ARRAY_TASK_ID={tid}" in errs[tid]
        assert_quiet(errs[tid])
    # each task wrote its own partial file (atomically) and nothing else: no statistics, no shared file
    writes = read_writes(tmp_path, out)
    assert {t: w["atomic"] for t, w in writes.items()} == {str(tid): {f"shards/partial-{k}-of-3.npz"}
                                                          for k, tid in enumerate(sorted(errs))}
    assert all(not w["direct"] for w in writes.values()), writes
    assert files(out) == {f"shards/partial-{k}-of-3.npz" for k in range(3)}
    merged_equals_unsharded(probe_whole, out, 3, "--shard auto: SLURM array")


@needs_torchrun
def test_probe_torchrun_2_processes_then_merge_equals_unsharded(probe_whole, tiny_cache, tmp_path):
    out = tmp_path / "torchrun"
    err = torchrun("probe", [*PROBE_ARGS, "--out", str(out)], {"RAY_PLANTAIN_CACHE": tiny_cache})
    for r in (0, 1):
        assert f"shard {r}/2 (--shard auto: torchrun (RANK={r}, WORLD_SIZE=2" in err
    assert files(out) == {"shards/partial-0-of-2.npz", "shards/partial-1-of-2.npz"}
    merged_equals_unsharded(probe_whole, out, 2, "--shard auto: torchrun")


# --------------------------------------------------------------------------------------- evaluate
GEN_ARGS = ["generate", "--model", "tiny", "--device", "cpu", "--steps", "2", "--max-side", "64", "--quiet"]
METHODS = ("klein", "image_as_albedo", "retinex_color")


@pytest.fixture(scope="module")
def gen_data(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes import write_synthetic_render

    return write_synthetic_render(tmp_path_factory.mktemp("cluster-eval") / "data", scenes=("alpha", "beta"),
                                  lightings=("key", "rim"))


@pytest.fixture(scope="module")
def gen_whole(gen_data, tiny_cache, tmp_path_factory) -> Path:
    """The unsharded run, in this process, on one thread (as every rank below)."""
    import torch

    from evaluate.__main__ import main

    out = tmp_path_factory.mktemp("cluster-eval") / "whole"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*GEN_ARGS, "--data", str(gen_data), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def gen_slurm(gen_data, gen_whole, tiny_cache, tmp_path_factory) -> tuple[Path, Path, dict]:
    tmp = tmp_path_factory.mktemp("cluster-eval-slurm")
    out = tmp / "out"
    errs = slurm_array("evaluate", [*GEN_ARGS, "--data", str(gen_data), "--out", str(out)], tmp,
                       {"RAY_PLANTAIN_CACHE": tiny_cache})
    return out, tmp, errs


VOLATILE = ("seconds", "load_seconds")                   # timings


def steady(d):
    """`d` without timings, at any depth."""
    if isinstance(d, dict):
        return {k: steady(v) for k, v in d.items() if k not in VOLATILE}
    if isinstance(d, list):
        return [steady(v) for v in d]
    return d


def assert_same_predictions(whole: Path, sharded: Path) -> None:
    """Every prediction of the sharded run equals the unsharded one; the shared index files (manifest.json,
    config.json), which no shard writes, are rebuilt from the sidecars and then equal the unsharded ones."""
    from evaluate.predictions import SHARED_FILES, PredictionStore
    from render.imageio import read_exr

    def predictions(root: Path) -> set[str]:
        return {f for f in files(root) if "/shards/" not in f and f.rsplit("/", 1)[-1] not in SHARED_FILES}

    assert predictions(sharded) == predictions(whole)
    for method in METHODS:
        a, b = whole / "pred" / method, sharded / "pred" / method
        assert not any((b / name).exists() for name in SHARED_FILES), "a shard wrote a shared index file"
        samples = sorted(p.stem for p in a.glob("*.json") if p.stem not in ("manifest", "config"))
        assert len(samples) == 4
        for s in samples:
            assert (a / f"{s}_albedo_srgb.png").read_bytes() == (b / f"{s}_albedo_srgb.png").read_bytes(), (method, s)
            np.testing.assert_array_equal(read_exr(a / f"{s}_albedo_linear.exr"), read_exr(b / f"{s}_albedo_linear.exr"))
            sa, sb = (json.loads((d / f"{s}.json").read_text()) for d in (a, b))
            assert steady(sa) == steady(sb)
        PredictionStore(sharded / "pred", method).rebuild_index()     # what `evaluate score` does
        ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
        assert len(ma["predictions"]) == len(mb["predictions"]) == 4
        assert steady(ma) == steady(mb)


def test_evaluate_generate_slurm_array_of_3_equals_unsharded(gen_whole, gen_slurm):
    out, tmp, errs = gen_slurm
    for k, tid in enumerate(sorted(errs)):
        assert f"shard {k}/3 (--shard auto: SLURM array (SLURM_ARRAY_TASK_ID={tid}" in errs[tid]
        assert_quiet(errs[tid])
    assert_same_predictions(gen_whole, out)
    record = json.loads((out / "pred" / "klein" / "shards" / "shard-0-of-3.json").read_text())
    assert record["shard"]["count"] == 3 and record["shard"]["source"].startswith("--shard auto: SLURM array")
    writes = read_writes(tmp, out)
    assert len(writes) == 3
    direct = {t: w["direct"] for t, w in writes.items() if w["direct"]}
    assert not direct, f"files written in place, not via a temp file and a rename: {direct}"
    # each prediction (its EXR, PNG and sidecar) is written by exactly one task
    per_sample = {}
    for task, w in writes.items():
        for f in w["atomic"]:
            if f.endswith(("_albedo_linear.exr", "_albedo_srgb.png")):
                per_sample.setdefault(f, set()).add(task)
    assert len(per_sample) == 2 * 4 * len(METHODS) and all(len(t) == 1 for t in per_sample.values())


def test_evaluate_generate_ranks_write_no_shared_file(gen_slurm):
    out, tmp, _ = gen_slurm
    writes = read_writes(tmp, out)
    writers: dict[str, set] = {}
    for task, w in writes.items():
        for f in w["atomic"] | w["direct"]:
            writers.setdefault(f, set()).add(task)
    shared = sorted(f for f, t in writers.items() if len(t) > 1)
    assert not shared, f"files written by more than one rank: {shared}"


@needs_torchrun
def test_evaluate_generate_torchrun_2_processes_equals_unsharded(gen_data, gen_whole, tiny_cache, tmp_path):
    out = tmp_path / "torchrun"
    err = torchrun("evaluate", [*GEN_ARGS, "--data", str(gen_data), "--out", str(out)],
                   {"RAY_PLANTAIN_CACHE": tiny_cache})
    for r in (0, 1):
        assert f"shard {r}/2 (--shard auto: torchrun (RANK={r}, WORLD_SIZE=2" in err
    assert_same_predictions(gen_whole, out)


def test_evaluate_generate_status_names_the_shards_to_rerun(gen_data, gen_whole, tmp_path):
    from evaluate.__main__ import main

    out = tmp_path / "status"
    shutil.copytree(gen_whole, out)
    args = ["generate", "--data", str(gen_data), "--out", str(out), "--status", "3"]
    code, text = _capture(main, args)
    assert code == 0 and "complete: all 12 items" in text, text
    # sorted ids: alpha__key (0), alpha__rim (1), beta__key (2), beta__rim (0)
    (out / "pred" / "klein" / "beta__key.json").unlink()
    png = out / "pred" / "retinex_color" / "alpha__rim_albedo_srgb.png"
    png.write_bytes(png.read_bytes()[:20])
    code, text = _capture(main, args)
    assert code == 3, text
    assert "missing  klein/beta__key  (shard 2/3: no finished prediction)" in text
    assert "missing  retinex_color/alpha__rim  (shard 1/3" in text
    assert "in shard(s) 1,2 of 3" in text
    assert "`bash scripts/slurm/status.sh` prints the sbatch commands" in text
    assert "without --status and with --shard K/3 for each K in 1,2" in text and "<study>" not in text
    code, text = _capture(main, [*args, "--no-baselines"])
    assert code == 3 and "retinex_color" not in text and "1 of 4 missing" in text
    code, text = _capture(main, ["generate", "--data", str(tmp_path / "nothing"), "--out", str(out), "--status", "3"])
    assert code == 2


def test_generate_status_lists_predictions_of_an_older_render(gen_data, gen_whole, tmp_path):
    """A sample re-rendered after its prediction was made is not finished (generate would redo it): the listing
    says why, for klein and the baselines alike, and a render put back as it was is complete again."""
    import json

    from evaluate.__main__ import main

    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(gen_data, data)
    shutil.copytree(gen_whole, out)
    args = ["generate", "--data", str(data), "--out", str(out), "--status", "3"]
    assert _capture(main, args)[0] == 0
    entry = next(e for e in json.loads((data / "manifest.json").read_text())["samples"] if e["id"] == "beta__key")
    png = data / entry["image_srgb"]
    kept = png.read_bytes()
    from PIL import Image
    with Image.open(png) as im:
        arr = np.asarray(im).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(png)
    code, text = _capture(main, args)
    assert code == 3, text
    for m in ("klein", "image_as_albedo", "retinex_color"):
        assert f"missing  {m}/beta__key  (shard 2/3: made from an older {entry['image_srgb']}" in text, text
    assert "incomplete: 3 of 12 missing, in shard(s) 2 of 3" in text
    png.write_bytes(kept)
    assert _capture(main, args)[0] == 0


# ------------------------------------------------------------------------------- sbatch templates
SLURM_DIR = ROOT / "scripts" / "slurm"
TEMPLATES = ("render", "probe", "merge", "generate", "finish")
# Options the templates use that land with other steps of the plan: accepted here by name (with one value)
# until today's parser knows them; from then on they are checked like every other option.
FUTURE = {
    "render": {"--recolor": "issue 9 (colour variants)", "--device": "issue 11 section 3 (render on a GPU)"},
    "probe": {"--stimuli": "issue 9 (image probe)", "--data": "issue 9 (image probe)"},
}
FAKE = r"""#!{python}
import json, os, sys
env = {{k: v for k, v in os.environ.items() if k.startswith(("SLURM_ARRAY", "RANK", "WORLD_SIZE"))}}
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:], env]) + "\n")
if os.path.basename(sys.argv[0]) == "sbatch":
    n = sum(1 for _ in open(os.environ["FAKE_LOG"]))
    print(f"{{1000 + n}};testcluster")
"""


@pytest.fixture
def fakes(tmp_path) -> tuple[Path, Path]:
    """A bin folder whose python, torchrun and sbatch only log their arguments (JSON lines)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("python", "torchrun", "sbatch"):
        (bin_ / name).write_text(FAKE.format(python=sys.executable))
        (bin_ / name).chmod(0o755)
    return bin_, tmp_path / "calls.log"


def run_script(script: Path, fakes, tmp_path: Path, with_env: bool = False, **env) -> list:
    bin_, log = fakes
    log.unlink(missing_ok=True)
    e = clean_env(PATH=f"{bin_}:{os.environ['PATH']}", FAKE_LOG=log, PYTHON=bin_ / "python",
                  TORCHRUN=bin_ / "torchrun", STUDY=tmp_path / "study", SLURM_SUBMIT_DIR=ROOT,
                  XDG_STATE_HOME=tmp_path / "state", **env)
    p = subprocess.run(["bash", str(script)], cwd=ROOT, env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{script.name}: {p.stderr}"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if with_env:
        return calls
    return [c[:-1] for c in calls]                   # the last item is the caller's scheduler environment


def job_parser(module: str):
    import importlib

    return importlib.import_module(f"{module}.__main__").build_parser()


def check_command(argv: list[str]) -> list[str]:
    """Parse one recorded command line with the job's own parser; returns what today's code cannot check yet."""
    import argparse
    import contextlib
    import io

    if argv[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        t = get_args_parser().parse_args(argv[1:])
        assert t.module and t.standalone and int(t.nproc_per_node) >= 2, argv
        module, rest = t.training_script, list(t.training_script_args)
    else:
        assert argv[0] == "python" and argv[1] == "-m", argv
        module, rest = argv[2], argv[3:]
    parser = job_parser(module)
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs and rest[0] not in subs[0].choices:
        return [f"{module} {rest[0]} (no such subcommand yet)"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _, extra = parser.parse_known_args(rest)
    except SystemExit:
        raise AssertionError(f"{module} rejects {' '.join(rest)}:\n{err.getvalue()}") from None
    deferred = []
    while extra:
        opt = extra.pop(0)
        assert opt in FUTURE.get(module, {}), f"{module}: unknown option {opt!r} in {' '.join(rest)}"
        assert extra and not extra[0].startswith("--"), f"{module}: {opt} without a value"
        deferred.append(f"{module} {opt} {extra.pop(0)} ({FUTURE[module][opt]})")
    return deferred


def test_slurm_scripts_are_valid_bash():
    scripts = sorted(SLURM_DIR.glob("*.sbatch")) + sorted(SLURM_DIR.glob("*.sh"))
    assert {p.stem for p in scripts} >= {*TEMPLATES, "study", "submit", "status"}
    for p in scripts:
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, f"{p.name}: {r.stderr}"
    for name in TEMPLATES:
        text = (SLURM_DIR / f"{name}.sbatch").read_text()
        assert text.startswith("#!/usr/bin/env bash\n#SBATCH ") and "set -euo pipefail" in text
        assert 'source "${STUDY_CONFIG:-scripts/slurm/study.sh}"' in text


@pytest.mark.parametrize("name,gpus", [(t, 1) for t in TEMPLATES] + [("probe", 2), ("generate", 2), ("finish", 2)]
                         + [("probe", 0), ("generate", 0), ("finish", 0)])
def test_sbatch_template_command_lines_parse(name, gpus, fakes, tmp_path):
    """Every job's command line parses; GPUS_PER_TASK=2 runs torchrun, 0 (a CPU-only cluster) runs on CPU; finish
    checks as many shards as generate ran (tasks x GPUs per task, or the tasks without GPUs)."""
    (tmp_path / "study" / "render").mkdir(parents=True)
    (tmp_path / "study" / "render" / "manifest.json").write_text("{}")      # finish checks generate against it
    calls = run_script(SLURM_DIR / f"{name}.sbatch", fakes, tmp_path, GPUS_PER_TASK=gpus, SLURM_ARRAY_TASK_ID=1,
                       SLURM_ARRAY_TASK_COUNT=4, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=3,
                       SLURM_CPUS_PER_TASK=4, N_SCENES=12)
    assert calls, f"{name}.sbatch ran no job"
    study = tmp_path / "study"
    checked, deferred = 0, []
    for argv in calls:
        assert str(study) in " ".join(argv), f"{argv}: not under $STUDY"
        if name in ("probe", "generate"):
            assert argv[0] == ("torchrun" if gpus == 2 else "python") and "--shard" in argv
            assert argv[argv.index("--shard") + 1] == "auto"
            device = argv[argv.index("--device") + 1] if "--device" in argv else "auto"
            dtype = argv[argv.index("--dtype") + 1] if "--dtype" in argv else "auto"
            assert (device, dtype) == (("cpu", "bfloat16") if gpus == 0 else ("auto", "auto")), argv
        d = check_command(argv)
        deferred += d
        checked += not any("subcommand" in x for x in d)
    if name == "render":
        assert calls[0][calls[0].index("--generate") + 1] == "12" and "--shard" in calls[0]
    if name == "finish":
        assert [c[2] for c in calls] == ["render"] + ["evaluate"] * 4
        assert [c[3] for c in calls[1:]] == ["generate", "score", "link", "report"]
        assert calls[0][calls[0].index("--status") + 1] == "8"                           # RENDER_TASKS
        assert calls[1][calls[1].index("--status") + 1] == str(8 * max(gpus, 1))         # GEN_TASKS x GPUs
    if not checked:
        pytest.skip(f"{name}.sbatch: nothing today's parsers can check yet: {deferred}")


def test_submit_chains_the_five_jobs_with_afterok(fakes, tmp_path):
    calls = run_script(SLURM_DIR / "submit.sh", fakes, tmp_path, RENDER_TASKS=6, PROBE_TASKS=3, GEN_TASKS=5,
                       ACCOUNT="proj1", PARTITION_GPU="gpu")
    assert [c[0] for c in calls] == ["sbatch"] * 5
    jobs = {Path(c[-1]).stem: c for c in calls}
    assert list(jobs) == ["render", "probe", "merge", "generate", "finish"]
    ids = {name: str(1001 + i) for i, name in enumerate(jobs)}     # the fake prints 100N;testcluster

    def opt(name, key):
        vals = [a.split("=", 1)[1] for a in jobs[name] if a.startswith(f"--{key}=")]
        return vals[0] if vals else None

    assert all("--parsable" in c and "--account=proj1" in c for c in calls)
    assert (opt("render", "array"), opt("probe", "array"), opt("generate", "array")) == ("0-5", "0-2", "0-4")
    assert opt("merge", "array") is None and opt("finish", "array") is None
    assert opt("render", "dependency") is None
    assert opt("probe", "dependency") == f"afterok:{ids['render']}"
    assert opt("merge", "dependency") == f"afterok:{ids['probe']}"
    assert opt("generate", "dependency") == f"afterok:{ids['render']}"
    assert opt("finish", "dependency") == f"afterok:{ids['merge']}:{ids['generate']}"
    assert opt("probe", "gres") == "gpu:1" and opt("probe", "partition") == "gpu" and opt("render", "gres") is None
    study = tmp_path / "study"
    assert opt("render", "output") == f"{study}/logs/%x-%A_%a.out" and (study / "logs").is_dir()
    for c in calls:
        assert (ROOT / c[-1]).is_file()

    # the study keeps its resolved settings; the jobs read those, whatever the environment says later
    assert "RENDER_TASKS=6" in (study / "submitted.env").read_text()
    later = run_script(SLURM_DIR / "render.sbatch", fakes, tmp_path, STUDY_CONFIG=study / "study.sh",
                       DATA=tmp_path / "elsewhere", SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=6)
    assert later[0][later[0].index("--out") + 1] == str(study / "render")
    # submitting again with the same settings is a resume; with other settings it is refused
    assert len(run_script(SLURM_DIR / "submit.sh", fakes, tmp_path, RENDER_TASKS=6, PROBE_TASKS=3, GEN_TASKS=5,
                          ACCOUNT="proj1", PARTITION_GPU="gpu")) == 5
    bin_, log = fakes
    log.unlink()
    e = clean_env(PATH=f"{bin_}:{os.environ['PATH']}", FAKE_LOG=log, STUDY=study, RENDER_TASKS=7)
    p = subprocess.run(["bash", str(SLURM_DIR / "submit.sh")], env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "other settings" in p.stderr and "RENDER_TASKS" in p.stderr and not log.exists()


def test_gpu_cluster_submission_is_unchanged(tmp_path):
    """study.sh's defaults (one GPU per probe and generate task) submit exactly the documented five commands."""
    study = tmp_path / "study"
    e = clean_env(STUDY=study, DRY_RUN=1, XDG_STATE_HOME=tmp_path / "state")
    p = subprocess.run(["bash", str(SLURM_DIR / "submit.sh")], cwd=tmp_path, env=e, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    head = f"sbatch --parsable --chdir={ROOT}"
    arr, job = f"--output={study}/logs/%x-%A_%a.out", f"--output={study}/logs/%x-%j.out"
    assert p.stderr.splitlines() == [
        f"{head} --cpus-per-task=16 --mem=16G {arr} --time=06:00:00 --array=0-7 scripts/slurm/render.sbatch",
        f"{head} --gres=gpu:1 --cpus-per-task=8 --mem=64G {arr} --time=08:00:00 --dependency=afterok:<render-job> "
        "--array=0-3 scripts/slurm/probe.sbatch",
        f"{head} --cpus-per-task=8 --mem=32G {job} --time=02:00:00 --dependency=afterok:<probe-job> "
        "scripts/slurm/merge.sbatch",
        f"{head} --gres=gpu:1 --cpus-per-task=8 --mem=64G {arr} --time=12:00:00 --dependency=afterok:<render-job> "
        "--array=0-7 scripts/slurm/generate.sbatch",
        f"{head} --cpus-per-task=8 --mem=32G {job} --time=04:00:00 --dependency=afterok:<merge-job>:<generate-job> "
        "scripts/slurm/finish.sbatch"]
    assert not study.exists() and not (tmp_path / "state").exists()         # a dry run writes nothing


@pytest.mark.parametrize("ids", [(2, 5), (2, 3), (6,)])
def test_resubmitting_chosen_tasks_keeps_the_original_split(ids, fakes, tmp_path):
    """`sbatch ... --array=2,5 --export=ALL,SHARD_COUNT=8 render.sbatch` (as status.sh prints it) runs shards 2/8 and 5/8,
    although Slurm describes a 2-task array to those tasks."""
    from render.shard import Shard

    for tid in ids:
        slurm = dict(SLURM_ARRAY_TASK_ID=tid, SLURM_ARRAY_TASK_COUNT=len(ids), SLURM_ARRAY_TASK_MIN=min(ids),
                     SLURM_ARRAY_TASK_MAX=max(ids))
        if len(ids) > 1:
            slurm["SLURM_ARRAY_TASK_STEP"] = max(ids) - min(ids)
        (call,) = run_script(SLURM_DIR / "render.sbatch", fakes, tmp_path, with_env=True, SHARD_COUNT=8, **slurm)
        assert call[call.index("--shard") + 1] == "auto"
        assert Shard.parse("auto", environ=call[-1], announce=False) == Shard(tid, 8)


def test_evaluate_ablate_in_two_shards_then_whole_equals_unsharded(gen_data, probe_whole, tiny_cache, tmp_path):
    """`evaluate ablate --shard K/N` writes only its samples' plain and ablated predictions (no plan, scores or
    summary: nothing shared); the same command without --shard then reuses every one of them (nothing is
    generated again) and gives the unsharded run's predictions, plan and ablation summary."""
    import torch

    from evaluate.__main__ import main

    args = ["ablate", "--model", "tiny", "--device", "cpu", "--steps", "2", "--max-side", "64", "--quiet",
            "--k", "1", "--n-random", "2", "--n-boot", "50", "--probe", str(probe_whole),
            "--data", str(gen_data)]     # k = 1: a 4-head group leaves 3 different draws (k = 2 in one group: 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--out", str(tmp_path / "whole")]) == 0
        sharded = tmp_path / "sharded"
        for k in (0, 1):
            assert main([*args, "--out", str(sharded), "--shard", f"{k}/2"]) == 0
            assert not any((sharded / f).exists() for f in ("ablation_plan.json", "scores.csv", "ablation.json"))
        made = {p: p.stat().st_mtime_ns for p in (sharded / "pred").rglob("*_albedo_*")}
        assert len(made) == 2 * 4 * (1 + 1 + 2)         # EXR + PNG x 4 samples x (klein, top-1, 2 random draws)
        assert main([*args, "--out", str(sharded)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert {p: p.stat().st_mtime_ns for p in (sharded / "pred").rglob("*_albedo_*")} == made, "generated again"
    whole = tmp_path / "whole"
    methods = sorted(p.name for p in (whole / "pred").iterdir())
    assert methods == sorted(p.name for p in (sharded / "pred").iterdir())
    assert any(m.startswith("klein__ablate_top1") for m in methods)
    for m in methods:
        for png in sorted((whole / "pred" / m).glob("*_albedo_srgb.png")):
            assert png.read_bytes() == (sharded / "pred" / m / png.name).read_bytes(), (m, png.name)
    for name in ("ablation_plan.json", "ablation.json"):
        a, b = (json.loads((d / name).read_text()) for d in (whole, sharded))
        assert steady(a) == steady(b), name

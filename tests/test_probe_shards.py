"""Issue 11 section 2: `probe run --shard K/N` captures its share of the pairs into its own partial file, and
`probe merge` checks the shards (one configuration and unit set, every pair exactly once) and finishes the run
through the same function as `probe run`. On the tiny model: a 3-way split merged equals the unsharded run (also
with one shard run twice), and every refusal is one paragraph that writes nothing.

The SLURM array and torchrun versions of the same check are in tests/test_cluster.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from probe.design.stimuli import TextDesign
from render.shard import Shard

RUN = ["run", "--model", "tiny", "--device", "cpu", "--limit", "5", "--steps", "2", "--capture-steps", "0,1",
       "--quiet"]
STATS = ["--n-perm", "200", "--n-boot", "50", "--n-splits", "10"]
ARRAYS = ("a", "b", "control_a", "control_b", "control_vocabulary_a", "control_vocabulary_b")


def probe_main(argv, capsys=None) -> tuple[int, str, str]:
    """`python -m probe ARGV` in this process, on one thread (as the subprocesses of test_cluster.py run)."""
    import torch

    from probe.__main__ import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_same_captures(whole: Path, merged: Path, atol: float = 1e-6) -> None:
    """The merged captures.npz holds the unsharded run's values (to atol), names, pair order and meta."""
    a, b = np.load(whole / "captures.npz"), np.load(merged / "captures.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        if a[k].dtype.kind == "f":
            np.testing.assert_allclose(b[k], a[k], rtol=0, atol=atol, err_msg=k)
        elif k == "meta_json":
            assert json.loads(str(a[k])) == json.loads(str(b[k]))
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for k in ARRAYS:
        assert k in a.files
    assert a["a"].shape == (5, 48)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_cache):
    """The unsharded run, a 3-way split into one folder, and shard 1/3 run a second time into another folder."""
    root = tmp_path_factory.mktemp("shards")
    assert probe_main([*RUN, *STATS, "--no-report", "--out", root / "whole"])[0] == 0
    for k in range(3):
        assert probe_main([*RUN, "--shard", f"{k}/3", "--out", root / "split"])[0] == 0
    assert probe_main([*RUN, "--shard", "1/3", "--out", root / "again"])[0] == 0
    return root


# ---------------------------------------------------------------------------------------- the split

def test_a_pairs_stimuli_stay_in_one_shard_round_robin_over_sorted_pair_ids():
    from probe.design.shards import pair_ids_of, shard_pairs, shard_stimuli

    ids = ["p3", "p1", "p4", "p0", "p2"]
    design = TextDesign(pair_ids=tuple(ids), a=tuple(f"A {i}" for i in ids), b=tuple(f"B {i}" for i in ids),
                        controls={"paraphrase": {"p1": "P1", "p4": "P4"}, "vocabulary": {i: f"V {i}" for i in ids}},
                        seed=3, seeds_per_pair=2)
    stimuli = design.stimuli()
    assert pair_ids_of(stimuli) == ["p0", "p1", "p2", "p3", "p4"]
    assert [shard_pairs(stimuli, Shard(k, 3)) for k in range(3)] == [["p0", "p3"], ["p1", "p4"], ["p2"]]
    seen = []
    for k in range(3):
        mine = shard_stimuli(stimuli, Shard(k, 3))
        pairs = {s.pair_id for s in mine}
        assert pairs == set(shard_pairs(stimuli, Shard(k, 3)))
        # every stimulus of a pair (A, B, each control, both noise draws) is in the pair's shard
        assert len(mine) == sum(1 for s in stimuli if s.pair_id in pairs)
        if k == 1:
            assert {(s.role, s.draw) for s in mine if s.pair_id == "p1"} == {
                (r, d) for r in ("a", "b", "control:paraphrase", "control:vocabulary") for d in (0, 1)}
        seen += mine
    assert sorted(seen, key=repr) == sorted(stimuli, key=repr)
    assert shard_stimuli(stimuli, Shard()) == stimuli


def test_a_sharded_run_writes_only_its_partial_file(runs):
    from probe.design.shards import read_shard

    split = runs / "split"
    assert sorted(p.name for p in split.iterdir() if not p.name.startswith(".")) == ["shards"]   # no statistics
    names = sorted(p.name for p in (split / "shards").iterdir())
    assert names == ["partial-0-of-3.npz", "partial-1-of-3.npz", "partial-2-of-3.npz"]
    parts = [read_shard(split / "shards" / n) for n in names]
    ids = sorted(np.load(runs / "whole" / "captures.npz")["pair_ids"].tolist())     # the 5 pairs, sorted
    assert [list(p.pair_ids) for p in parts] == [ids[0::3], ids[1::3], ids[2::3]]
    for k, p in enumerate(parts):
        assert p.finished and p.shard == Shard(k, 3) and p.record["shard"]["source"] == f"--shard {k}/3"
        assert p.values.shape == (5 * len(p.pair_ids), 48) and p.values.dtype == np.float32   # A, B, 3 controls
        assert len(p.units) == 48 and p.units[0] == "s00/double.0.img/h00"
        assert p.key_fields["capture"]["steps"] == 2 and p.key_fields["device_type"] == "cpu"
        assert p.configuration_key == parts[0].configuration_key and p.fingerprint == parts[0].fingerprint
        assert p.record["config"]["shard"]["count"] == 3 and p.record["args"]["limit"] == 5
    whole_cfg = json.loads((runs / "whole" / "config.json").read_text())
    assert whole_cfg["shard"] == {"index": 0, "count": 1, "source": "whole run (no --shard)"}


def test_the_shard_says_how_to_merge_and_resumes_from_its_file(runs, tmp_path, capsys):
    out = tmp_path / "resume"
    shutil.copytree(runs / "split", out)
    before = (out / "shards" / "partial-2-of-3.npz").read_bytes()
    code, stdout, err = probe_main([*RUN, "--shard", "2/3", "--out", out], capsys)
    assert code == 0
    assert "shard 2/3: 1 of 5 pairs (5 stimuli) captured into" in stdout and f"python -m probe merge {out}" in stdout
    assert "starting fresh" not in err                     # its own finished file is its resume cache
    from probe.design.shards import read_shard

    again = read_shard(out / "shards" / "partial-2-of-3.npz")
    assert again.record["config"]["capture_info"]["captured_now"] == 0
    assert again.record["config"]["capture_info"]["from_cache"] == 5
    z0 = np.load(out / "shards" / "partial-2-of-3.npz")
    with np.load(__import__("io").BytesIO(before)) as z1:
        np.testing.assert_array_equal(z0["values"], z1["values"])


# ------------------------------------------------------------------------------------------- merging

def test_merged_3_way_split_equals_the_unsharded_run(runs, tmp_path, capsys):
    out = tmp_path / "merged"
    code, stdout, err = probe_main(["merge", runs / "split", "--out", out, *STATS, "--no-report"], capsys)
    assert code == 0, err
    assert "merging 3 shard file(s) (0/3, 1/3, 2/3): 5 pairs, one configuration" in err
    assert "RANDOM WEIGHTS" in stdout
    assert_same_captures(runs / "whole", out)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (runs / "whole", out))
    assert sa == sb
    ua, ub = ((d / "units.csv").read_text() for d in (runs / "whole", out))
    assert ua == ub
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["job"] == "probe merge" and [s["shard"]["index"] for s in cfg["shards"]] == [0, 1, 2]
    assert cfg["capture_info"]["captured_now"] == 25 and cfg["merge"]["n_pairs"] == 5
    whole = json.loads((runs / "whole" / "config.json").read_text())
    for k in ("capture", "prompts", "noise", "control_sets", "text_lengths", "n_pairs", "direction", "stats"):
        assert cfg[k] == whole[k], k


def test_merge_in_place_with_one_shard_run_twice(runs, tmp_path, capsys):
    """The usual case (all shards wrote into one folder, merged there), plus a second run of shard 1/3 elsewhere:
    its identical pairs count once."""
    out = tmp_path / "split"
    shutil.copytree(runs / "split", out)
    code, stdout, err = probe_main(["merge", out, runs / "again", "--out", out, *STATS], capsys)
    assert code == 0, err
    assert "2 pair(s) held twice with identical values, counted once" in err
    assert_same_captures(runs / "whole", out)
    for name in ("captures.npz", "units.csv", "summary.json", "config.json", "report.md"):
        assert (out / name).is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["merge"]["identical_duplicates"] == ["glossy_sphere_pedestal", "striped_torus"]
    assert cfg["merge"]["shard_files"] == 4 and len(cfg["merge"]["unused_files"]) == 1
    # the common --out is the default; --dry-run writes nothing and says it is complete
    code, stdout, _ = probe_main(["merge", runs / "split", "--dry-run"], capsys)
    assert code == 0 and "complete: all 5 items of probe are finished" in stdout
    assert sorted(p.name for p in (runs / "split").iterdir()) == ["shards"]


def _refused(argv, capsys, *needles) -> str:
    code, stdout, err = probe_main(argv, capsys)
    assert code == 2, (stdout, err)
    assert "Traceback" not in err and len([x for x in err.strip().splitlines() if x.strip()]) == 1, err
    assert ".." not in err.replace("...", ""), err          # parts joined into sentences end once
    for n in needles:
        assert n in err, (n, err)
    return err


def test_missing_pairs_are_named_with_their_shard_and_nothing_is_written(runs, tmp_path, capsys):
    folder = tmp_path / "two_of_three"
    shutil.copytree(runs / "split", folder)
    (folder / "shards" / "partial-1-of-3.npz").unlink()
    out = tmp_path / "never"
    _refused(["merge", folder, "--out", out], capsys, "cannot merge: 2 of 5 pairs are in no finished shard file",
             "glossy_sphere_pedestal (shard 1/3)", "striped_torus (shard 1/3)", "bash scripts/slurm/status.sh",
             "--shard K/3 for each K in 1", "Nothing was written")
    assert not out.exists()
    code, stdout, _ = probe_main(["merge", folder, "--dry-run"], capsys)
    assert code == 3
    assert "missing  glossy_sphere_pedestal  (shard 1/3: no finished shard file)" in stdout
    assert "incomplete: 2 of 5 missing, in shard(s) 1 of 3" in stdout
    # a shard that was stopped mid-capture left only its resume cache: listed, never merged
    from probe.klein.capture_loop import save_cache
    from probe.design.shards import read_shard

    part = read_shard(runs / "split" / "shards" / "partial-1-of-3.npz")
    save_cache(folder / "shards" / "partial-1-of-3.npz", part.key_fields, dict(list(part.value_map().items())[:3]))
    code, stdout, _ = probe_main(["merge", folder, "--dry-run"], capsys)
    assert code == 3 and "(shard 1/3: still capturing or stopped: partial-1-of-3.npz has 3 of 10 stimuli cached)" \
        in stdout
    _refused(["merge", folder], capsys, "still capturing or stopped")
    assert not (folder / "captures.npz").exists()


def test_conflicting_duplicates_are_refused(runs, tmp_path, capsys):
    other = tmp_path / "other" / "shards"
    other.mkdir(parents=True)
    src = runs / "again" / "shards" / "partial-1-of-3.npz"
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["values"] = arrays["values"] * np.float32(1.001)
    np.savez(other / "partial-1-of-3.npz", **arrays)
    out = tmp_path / "never"
    _refused(["merge", runs / "split", tmp_path / "other", "--out", out], capsys,
             "2 pair(s) are held by more than one shard file with different values",
             "glossy_sphere_pedestal in partial-1-of-3.npz (shard 1/3) and partial-1-of-3.npz (shard 1/3)",
             "Remove the file(s) that should not count")
    assert not out.exists()


def test_shards_of_another_configuration_are_refused_naming_the_fields(runs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(runs / "split", folder)
    assert probe_main([*RUN[:-1], "--steps", "3", "--quiet", "--shard", "1/3", "--out", folder], capsys)[0] == 0
    _refused(["merge", folder, "--out", tmp_path / "never"], capsys,
             "not all made with one configuration",
             "partial-1-of-3.npz (shard 1/3) differs from partial-0-of-3.npz (shard 0/3) in capture.steps 2 -> 3")
    # another design (here: --limit) is named by its option, another unit set by its count
    shutil.copy(runs / "split" / "shards" / "partial-1-of-3.npz", folder / "shards")
    assert probe_main([*RUN, "--limit", "4", "--shard", "2/3", "--out", folder], capsys)[0] == 0
    _refused(["merge", folder, "--out", tmp_path / "never"], capsys,
             "partial-2-of-3.npz (shard 2/3) differs from partial-0-of-3.npz (shard 0/3) in the design",
             "--limit 5 -> 4")
    shutil.copy(runs / "split" / "shards" / "partial-2-of-3.npz", folder / "shards")
    assert probe_main([*RUN, "--capture-steps", "1", "--shard", "2/3", "--out", folder], capsys)[0] == 0
    _refused(["merge", folder, "--out", tmp_path / "never"], capsys, "capture.capture_steps [0, 1] -> [1]",
             "the unit set (48 -> 24 units")
    assert not (tmp_path / "never").exists()


def test_a_design_that_cannot_be_rebuilt_is_one_sentence_each(runs, tmp_path, capsys, monkeypatch):
    """The input files the shards read are gone: the job's own error inside the merge's, each said once."""
    import probe.jobs.run as run_job
    from probe.io.errors import UsageError

    def gone(args):
        raise UsageError("pairs.jsonl does not exist; nothing was written.")

    monkeypatch.setattr(run_job, "load_design", gone)
    err = _refused(["merge", runs / "split", "--out", tmp_path / "never"], capsys,
                   "cannot rebuild the design", "pairs.jsonl does not exist. The merge needs the same input files")
    assert err.lower().count("nothing was written") == 1


def test_bad_shard_and_merge_arguments(tmp_path, capsys, monkeypatch, tiny_cache):
    _refused([*RUN, "--shard", "3/3", "--out", tmp_path / "x"], capsys, "bad shard 3/3")
    monkeypatch.setenv("RANK", "1")
    for k in ("WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
              "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    _refused([*RUN, "--shard", "auto", "--out", tmp_path / "x"], capsys, "partial torchrun variables")
    assert not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    _refused(["merge", tmp_path / "empty"], capsys, "no shard files in")
    _refused(["merge", tmp_path / "nowhere"], capsys, "does not exist")
    (tmp_path / "empty" / "shards").mkdir()
    (tmp_path / "empty" / "shards" / "partial-0-of-2.npz").write_bytes(b"not a zip")
    _refused(["merge", tmp_path / "empty"], capsys, "not a readable shard file")


def test_merge_help_is_clear_and_light():
    import subprocess
    import sys

    code = ("import sys, runpy\nsys.argv = ['probe', 'merge', '--help']\ntry:\n    runpy.run_module('probe', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('HEAVY', sorted(m for m in ('torch', "
            "'diffusers', 'transformers') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0 and "HEAVY []" in r.stdout, r.stderr
    for needle in ("usage: python -m probe merge", "DIR [DIR ...]", "--dry-run", "--out", "partial-K-of-N.npz",
                   "exit status", "--n-perm"):
        assert needle in r.stdout, needle

"""evaluate study: the known-answer study's steps, resume rule, refusals and table (no model: the jobs are faked)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluate import study as st

ROOT = Path(__file__).resolve().parents[1]


def _render(tmp_path: Path, scenes=("checker_cube", "cornell_box")) -> Path:
    data = tmp_path / "render"
    data.mkdir()
    samples = [{"id": f"{s}__key", "base_scene": s} for s in scenes]
    (data / "manifest.json").write_text(json.dumps({"samples": samples}))
    return data


def _known(tmp_path: Path, name: str, scenes: str = "gen_s1_0000 .. gen_s1_0099") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "ray_plantain_known.json").write_text(json.dumps({"data_recipe": {"generator_scenes": scenes}}))
    return folder


def _cfg(tmp_path, data, **kw) -> st.StudyConfig:
    return st.StudyConfig(data=str(data), out=str(tmp_path / "study"), decomposing=str(_known(tmp_path, "a")),
                          reproduce_photo=str(_known(tmp_path, "p")), **kw)


def _verdict(outcomes: dict) -> dict:
    """outcomes: {H: outcome} or {H: (outcome, observed)}."""
    return {"hypotheses": [{"id": h, "outcome": o[0] if isinstance(o, tuple) else o,
                            "observed": o[1] if isinstance(o, tuple) else {}} for h, o in outcomes.items()]}


class FakeJobs:
    """subprocess.run stand-in: writes each step's marker file (and, for verdicts, the outcomes given)."""

    def __init__(self, cfg, outcomes):
        self.cfg, self.outcomes, self.calls = cfg, outcomes, []

    def __call__(self, argv, *a, **k):
        self.calls.append(list(argv))
        steps = {s.argv: s for s in st.study_steps(self.cfg)}
        step = steps[tuple(argv)]
        done = Path(step.done)
        done.parent.mkdir(parents=True, exist_ok=True)
        net = step.name.split(":")[0]
        done.write_text(json.dumps(_verdict(self.outcomes[net]) if step.name.endswith("verdict") else {}))
        return subprocess.CompletedProcess(argv, 0)


GOOD = {"decomposing": {"H4": "supported", "H5": "supported", "H6": "supported"},
        "reproduce-photo": {"H4": "not supported", "H5": "not supported", "H6": "not supported"},
        "untrained": {"H4": "not supported", "H5": "not supported", "H6": "not supported"}}


def test_study_runs_every_step_once_then_resumes_and_writes_its_table(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, _render(tmp_path), population=3, n_random=3)
    fake = FakeJobs(cfg, GOOD)
    monkeypatch.setattr(st.subprocess, "run", fake)
    table = st.run_study(cfg, log=lambda m: None)
    steps = st.study_steps(cfg)
    assert len(fake.calls) == len(steps) == 13
    assert steps[0].name == "decomposing: image probe" and "--randomize-seeds" in steps[2].argv
    assert table["all_as_expected"] is True
    assert {n: r["as_expected"] for n, r in table["rows"].items()} == {n: True for n in st.DEFAULT_NETWORKS}
    md = (Path(cfg.out) / "study.md").read_text()
    assert md.startswith("**networks trained here on synthetic renders: a check of the tool, not a finding about klein")
    # which model each network is (a --decomposing folder of another task, for instance, is named with its task)
    assert table["models"]["untrained"] == {"model": cfg.decomposing, "task": None, "randomize_seed": 1000}
    assert f"decomposing `{cfg.decomposing}`; " in md and "with its transformer randomised (seed 1000)" in md
    rec = Path(cfg.decomposing) / "ray_plantain_known.json"
    kept = rec.read_text()
    rec.write_text(json.dumps({**json.loads(kept), "task": "intrinsic"}))
    assert f"decomposing `{cfg.decomposing}` (task intrinsic);" in st.study_markdown(st.study_table(cfg))
    rec.write_text(kept)          # the model's record is part of what its steps rest on
    # resumed with the same command: nothing runs again
    fake.calls.clear()
    st.run_study(cfg, log=lambda m: None)
    assert fake.calls == []
    # a step whose marker vanished (an interrupted job) runs again, alone
    Path(steps[4].done).unlink()
    st.run_study(cfg, log=lambda m: None)
    assert fake.calls == [list(steps[4].argv)]


def test_a_network_that_gives_the_wrong_answer_is_flagged(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, _render(tmp_path), population=3, n_random=3)
    wrong = dict(GOOD, untrained={"H4": "supported", "H5": "not supported", "H6": "not supported"})
    monkeypatch.setattr(st.subprocess, "run", FakeJobs(cfg, wrong))
    table = st.run_study(cfg, log=lambda m: None)
    assert table["rows"]["untrained"]["as_expected"] is False and table["all_as_expected"] is False
    assert "| untrained |" in (Path(cfg.out) / "study.md").read_text() and "NO" in (Path(cfg.out) / "study.md").read_text()


def test_h6_not_tested_is_no_claim_only_where_no_decomposition_is_expected():
    assert st.gives_answer("H6", "not tested", "not supported") and st.gives_answer("H6", "not supported", "not supported")
    assert not st.gives_answer("H6", "not tested", "supported") and not st.gives_answer("H6", "supported", "not supported")
    assert not st.gives_answer("H4", "not tested", "not supported") and not st.gives_answer("H5", "not tested",
                                                                                              "not supported")


def test_another_command_over_a_finished_step_is_refused(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, _render(tmp_path), population=3, n_random=3)
    monkeypatch.setattr(st.subprocess, "run", FakeJobs(cfg, GOOD))
    st.run_study(cfg, log=lambda m: None)
    before = sorted(p.name for p in Path(cfg.out).rglob("*"))
    changed = st.StudyConfig(**{**cfg.__dict__, "steps": cfg.steps + 1})
    with pytest.raises(st.StudyError, match="another command"):
        st.run_study(changed, log=lambda m: None)
    assert sorted(p.name for p in Path(cfg.out).rglob("*")) == before


def test_training_scenes_and_a_population_of_one_are_refused_before_anything_is_written(tmp_path):
    data = _render(tmp_path, scenes=("checker_cube", "gen_s1_0007"))
    with pytest.raises(st.StudyError, match="trained on"):
        st.run_study(_cfg(tmp_path, data), log=lambda m: None)
    assert not (tmp_path / "study").exists()
    with pytest.raises(st.StudyError, match="population of one"):
        st.run_study(st.StudyConfig(data=str(data), out=str(tmp_path / "s2"), population=1), log=lambda m: None)
    assert not (tmp_path / "s2").exists()


def test_cli_errors_are_one_paragraph_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "evaluate", "study", "--data", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_changed_weights_run_a_finished_step_again(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, _render(tmp_path), population=3, n_random=3)
    fake = FakeJobs(cfg, GOOD)
    monkeypatch.setattr(st.subprocess, "run", fake)
    st.run_study(cfg, log=lambda m: None)
    fake.calls.clear()
    record = Path(cfg.reproduce_photo) / "ray_plantain_known.json"     # the model folder's content changes
    record.write_text(record.read_text().replace("}}", "}, \"retrained\": 1}"))
    st.run_study(cfg, log=lambda m: None)
    # the steps that rest on those weights run again (the jobs decide what their caches hold), no other
    assert fake.calls == [list(s.argv) for s in st.study_steps(cfg) if s.name.startswith("reproduce-photo:")]
    fake.calls.clear()
    record = Path(cfg.decomposing) / "ray_plantain_known.json"   # the population's and the untrained one's too
    record.write_text(record.read_text().replace("}}", "}, \"retrained\": 1}"))
    st.run_study(cfg, log=lambda m: None)
    assert len(fake.calls) == len(st.study_steps(cfg))


def _ranks(lighting: tuple, albedo: tuple) -> dict:
    """H4's observed ranks as the verdict writes them: (observed, population_max, rank_p) per class."""
    return {"ranks": {c: dict(zip(("observed", "population_max", "rank_p"), v))
                      for c, v in (("lighting-selective", lighting), ("albedo-selective", albedo))}}


def test_keeps_light_is_added_without_rerunning_the_others_and_needs_its_own_class(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, _render(tmp_path), population=3, n_random=3)
    fake = FakeJobs(cfg, GOOD)
    monkeypatch.setattr(st.subprocess, "run", fake)
    st.run_study(cfg, log=lambda m: None)
    with pytest.raises(st.StudyError, match="--keeps-light FOLDER"):
        st.run_study(st.StudyConfig(**{**cfg.__dict__, "only": st.NETWORKS_ALL}), log=lambda m: None)
    shading = _known(tmp_path, "s")
    more = st.StudyConfig(**{**cfg.__dict__, "only": st.NETWORKS_ALL, "keeps_light": str(shading)})
    light = {"H4": ("not supported", _ranks((7, 0, 0.25), (0, 0, 1.0))), "H5": "not supported"}
    fake2 = FakeJobs(more, dict(GOOD, **{"keeps-light": light}))
    monkeypatch.setattr(st.subprocess, "run", fake2)
    table = st.run_study(more, log=lambda m: None)
    new = [s for s in st.study_steps(more) if s.name.startswith("keeps-light:")]
    assert fake2.calls == [list(s.argv) for s in new] and len(new) == 4
    assert "--no-ablate" in new[1].argv and ["--model", str(shading)] == list(new[0].argv[6:8])
    # H4 and H5 as expected, but 7 lighting-selective units at rank p 0.25 are not beyond the population: NO
    row = table["rows"]["keeps-light"]
    assert row["outcomes"]["H4"] == "not supported" and row["own_class"]["beyond_population"] is False
    assert row["as_expected"] is False and table["all_as_expected"] is False
    assert "power check, keeps-light: lighting-selective 7 units (population max 0, rank p 0.25): NOT beyond" in \
        (Path(cfg.out) / "study.md").read_text()
    fake2.outcomes["keeps-light"] = dict(light, H4=("not supported", _ranks((7, 0, 0.05), (0, 0, 1.0))))
    Path(new[-1].done).unlink()                     # its verdict again, now with the class beyond the population
    table = st.run_study(more, log=lambda m: None)
    assert table["rows"]["keeps-light"]["as_expected"] is True and table["all_as_expected"] is True
    # context: whether the network's own answer shows its class on this render (output.img, the same rule)
    summary = Path(more.out) / "keeps-light" / "probe-images" / "summary.json"
    summary.write_text(json.dumps({"change_classes": {"output": {
        f"s0{i}/output.img": {"ratio_lighting_to_albedo": 2.2, "class_if_it_were_a_unit": c}
        for i, c in enumerate(["lighting-selective", "lighting-selective", "neither"])}}}))
    oc = st.study_table(more)["rows"]["keeps-light"]["own_class"]
    assert oc["output_steps"] == 3 and oc["output_steps_of_the_class"] == 2
    assert "its own answer (output.img, the same rule) is lighting-selective at 2 of 3 captured steps" in \
        st.study_markdown(st.study_table(more))


def test_cli_defaults_are_the_study_configs(monkeypatch, tmp_path):
    """`evaluate study` with no options builds StudyConfig's defaults; --keeps-light adds that network."""
    from evaluate.__main__ import build_parser

    seen = []
    monkeypatch.setattr(st, "run_study", lambda cfg, log=print: seen.append(cfg))
    st.main_study(build_parser().parse_args(["study", "--data", "d", "--out", "o"]))
    assert seen[-1] == st.StudyConfig(data="d", out="o")
    st.main_study(build_parser().parse_args(["study", "--data", "d", "--out", "o", "--keeps-light", "m",
                                             "--select", "change_lighting", "--match", "group"]))
    assert seen[-1] == st.StudyConfig(data="d", out="o", keeps_light="m", select="change_lighting", match="group",
                                      only=st.DEFAULT_NETWORKS + ("keeps-light",))

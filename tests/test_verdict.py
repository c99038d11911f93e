"""`python -m evaluate verdict` (issue 16 point 5) on fake inputs in the formats the tool writes (no model): each
hypothesis's supported / not supported / not tested branch, the criteria printed before any outcome and the same for
every model, the banners, and every refusal (one paragraph, exit 2, nothing written)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evaluate.verdict import VerdictError, verdict_from_folders
from evaluate.verdict_criteria import CRITERIA, criteria_markdown
from probe.klein.known import KNOWN_BANNER

UNITS = [f"s00/double.{i // 4}.img/h{i % 4:02d}" for i in range(8)]
TINY = {"model": "tiny", "source": "tiny", "random_weights": True, "randomize": {"mode": "none"},
        "spec": {"tiny_seed": 0}}
KNOWN = {"model": "known-albedo", "source": "local", "random_weights": False, "randomize": {"mode": "none"},
         "known_answer": {"name": "known-albedo", "task": "albedo", "banner": KNOWN_BANNER}}
KLEIN = {"model": "black-forest-labs/FLUX.2-klein-base-4B", "source": "hub", "random_weights": False,
         "randomize": {"mode": "none"}}
FP = {"tiny": "content-sha256:aaaa", "known-albedo": "content-sha256:bbbb",
      "black-forest-labs/FLUX.2-klein-base-4B": "commit:cccc", "other": "content-sha256:dddd"}


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _units_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _config(record: dict, seed: int | None = None, argv=None) -> dict:
    rec = dict(record)
    if seed is not None:
        rec["randomize"] = {"mode": "transformer", "seed": seed}
        rec["random_weights"] = True
    return {"argv": argv or ["probe/__main__.py", "run", "--model", record["model"], "--out", "x"],
            "model": rec, "capture": {"protocol": "heads", "steps": 4},
            "noise": {"noise": "per-pair", "seed": 0, "seeds_per_pair": 1},
            "capture_info": {"cache_fields": {"model_revision": FP.get(record["model"]),
                                              "randomize": rec["randomize"]}}}


def text_run(root: Path, name="text", record=TINY, n_fwer=3, beyond=2, controls=("paraphrase", "vocabulary",
             "shuffled"), n_pairs=25, n_perm=10_000, exact=False, seed=None, joint_attainable=True) -> Path:
    d = root / name
    directs = {f"vs_{c}": {"n_perm": n_perm, "null_exact": exact, "n_fwer_significant": beyond} for c in controls}
    _json(d / "summary.json", {
        "stimuli": "text", "n_pairs": n_pairs, "primary_contrast": "main", "direction": "A photograph - B albedo",
        "fwer_alpha": 0.05, "n_perm": n_perm, "null_exact": exact, "n_fwer_significant": n_fwer, "max_abs_t": 6.0,
        "fwer_abs_t_threshold": 3.5, "controls": list(controls), "directs": directs,
        **{f"n_selective_vs_{c}": beyond + 1 for c in controls}, "n_selective_beyond_control": beyond + 1,
        "n_selective_beyond_control_joint": beyond,
        "selective_beyond_control_error": {"n_families": len(controls) + 1, "joint_attainable": joint_attainable,
                                           "joint_alpha_per_family": 0.05 / (len(controls) + 1),
                                           "smallest_attainable_p_fwer": {"main": 1 / (1 + n_perm)}},
        "random_weights": bool(record.get("random_weights")) or seed is not None})
    _json(d / "config.json", _config(record, seed))
    _units_csv(d / "units.csv", [{"unit": u, "block": u.rsplit("/", 1)[0], "t": 6.0 if i < n_fwer else 0.5,
                                  "p_fwer": 0.001 if i < n_fwer else 0.9, "fwer_significant": int(i < n_fwer)}
                                 for i, u in enumerate(UNITS)])
    return d


def image_run(root: Path, name="images", record=TINY, lighting=4, albedo=3, seed=None, n_pairs=25,
              magnitude=True, change=True, scalar=None) -> Path:
    """A fake image probe run: change-class counts (H4's) `lighting` / `albedo`; the scalar `class` counts the same
    unless `scalar` = (lighting, albedo) says otherwise; change=False: a run without change classes."""
    d = root / name
    sl, sa = scalar if scalar is not None else (lighting, albedo)
    counts = {"lighting-selective": sl, "albedo-selective": sa, "both": 0, "neither": 8 - sl - sa,
              "inconclusive": 0}
    classes = {"counts": counts, **({"magnitude": {"margin": 0.5}} if magnitude else {})}
    extra = {"change_classes": {"counts": {"lighting-selective": lighting, "albedo-selective": albedo,
                                           "neither": 8 - lighting - albedo}, "margin": 0.5, "n_scenes": n_pairs,
                                "power": {"at_ratio_0": 1.0}}} if change else {}
    _json(d / "summary.json", {
        "stimuli": "images", "n_pairs": n_pairs, "primary_contrast": "render_vs_albedo", "fwer_alpha": 0.05,
        "contrasts": {"lighting": {"n_pairs": n_pairs}, "albedo": {"n_pairs": n_pairs}}, "classes": classes,
        "pairs_over": "scenes", "random_weights": bool(record.get("random_weights")) or seed is not None, **extra})
    _json(d / "config.json", _config(record, seed, ["probe/__main__.py", "run", "--model", record["model"],
                                                    "--stimuli", "images", "--data", "runs/render", "--out", "x"]))
    _units_csv(d / "units.csv", [{"unit": u, "block": u.rsplit("/", 1)[0], "t": 1.0, "p_fwer": 0.5,
                                  "fwer_significant": 0} for u in UNITS])
    return d


def population(root: Path, name: str, make, k: int, record=TINY, **kwargs) -> Path:
    """K untrained copies of `record` (members' values from `make(root, name, record=, seed=, **kwargs)`)."""
    d = root / name
    members = []
    for s in range(k):
        make(d, f"seed-{s:04d}", record=record, seed=s, **kwargs)
        members.append({"seed": s, "folder": f"seed-{s:04d}", "status": "finished"})
    _json(d / "population.json", {"format": "x", "randomize": "transformer", "members": members,
                                  "model": {"model": record["model"], "source": record["source"]}})
    return d


def cell(mean, hi, lo=None, stud_hi="absent"):
    e = {"mean": mean, "ci95_low": mean - 0.1 if lo is None else lo, "ci95_high": hi, "n": 50, "n_clusters": 25}
    if stud_hi != "absent":
        e.update(ci95_studentized_low=mean - 0.2, ci95_studentized_high=stud_hi)
    return e


def evaluate_folder(root: Path, name="eval", record=TINY, his=(-0.1, -0.1, -0.1, -0.1), stud=None, ablation=None,
                    klein=True) -> Path:
    d = root / name
    metrics = ("lmse_linear_scalar", "mse_srgb_scalar")
    paired, i = {}, 0
    for b in ("image_as_albedo", "retinex_color"):
        paired[b] = {}
        for m in metrics:
            paired[b][m] = cell(his[i] - 0.05, his[i], stud_hi="absent" if stud is None else stud[i])
            i += 1
    methods = {"image_as_albedo": {}, "retinex_color": {}, **({"klein": {}} if klein else {})}
    _json(d / "score_summary.json", {"n_boot": 1000, "methods": methods,
                                     **({"paired_differences": paired} if klein else {})})
    if klein:
        ident = {"model": record["model"], "source": record["source"], "fingerprint": FP.get(record["model"]),
                 "randomize": record["randomize"], "random_weights": record["random_weights"]}
        if record["source"] == "tiny":
            ident["tiny_seed"] = 0
        _json(d / "pred" / "klein" / "config.json", {"method": "klein", "uniform": True, "model": ident})
        _json(d / "pred" / "klein" / "manifest.json", {"model_record": record, "model": ident})
    if ablation is not None:
        _json(d / "ablation.json", ablation)
    return d


def ablation(p=0.05, draws=19, ks=(8, 32), select="change_albedo", distinct=True):
    """A fake ablation.json; distinct=False: an older record (no n_distinct_possible) whose draws all gave one mean."""
    sel = {"contrast": select, **({"n_distinct_possible": 10 ** 4, "match": "block"} if distinct else {})}
    means = [0.01 + 1e-4 * i for i in range(draws)] if distinct else [0.01] * draws
    return {"primary_metric": "lmse_linear_scalar", "ks": list(ks), "n_random": draws, "by_k": {
        str(k): {"heads": [], "selection": dict(sel), "metrics": {"lmse_linear_scalar": {
            "rank_p_top_hurts_more": p, "n_random_draws": draws, "p_min_attainable": 1 / (1 + draws),
            "random_draw_means": means,
            "top_harm_mean": 0.3, "random_harm_mean": 0.01, "n_samples": 50, "n_clusters": 25}}} for k in ks}}


# ------------------------------------------------------------------------------------------ criteria and banners

def test_criteria_are_printed_before_any_outcome_and_are_the_same_for_every_model(tmp_path):
    mds = []
    for rec in (TINY, KNOWN, KLEIN):
        v = verdict_from_folders(evaluate_folder(tmp_path, f"eval-{rec['model'][-5:]}", record=rec))
        md = v.markdown()
        block = "\n".join(criteria_markdown())
        assert block in md and md.index(block) < md.index("## Outcomes") < md.index("**supported**")
        assert all(md.index(o.claim) < md.index("## Outcomes") for o in v.outcomes)
        assert [c["id"] for c in v.as_dict()["criteria"]] == ["H1", "H2", "H3", "H4", "H5", "H6"]
        assert v.as_dict()["criteria"] == [c.as_dict() for c in CRITERIA]
        mds.append(md)
    first = [md.split("\n", 1)[0] for md in mds]
    assert first[0].startswith("**RANDOM WEIGHTS (not a finding)")
    assert first[1] == f"**known-albedo: {KNOWN_BANNER}.**"
    assert first[2] == "# Verdict: the card's claims as pre-declared hypotheses"


def test_randomized_network_gets_the_random_banner(tmp_path):
    rec = dict(KLEIN, randomize={"mode": "transformer", "seed": 3}, random_weights=True)
    v = verdict_from_folders(evaluate_folder(tmp_path, record=rec))
    assert v.banner.startswith("RANDOM WEIGHTS (not a finding)") and "--randomize transformer" in v.banner


# ------------------------------------------------------------------------------------------ H1 - H3 (text probe)

def test_text_hypotheses_branches(tmp_path):
    ev = evaluate_folder(tmp_path)
    v = verdict_from_folders(ev, probe_text=text_run(tmp_path, "t1", n_fwer=3, beyond=2))
    assert v.outcome("H1").outcome == "supported" and v.outcome("H1").observed["n_fwer_significant"] == 3
    assert v.outcome("H1").power["smallest_p_fwer"] == pytest.approx(1 / 10_001)
    assert v.outcome("H3").outcome == "supported"
    assert v.outcome("H2").outcome == "not tested" and "--randomize-seeds 0-18" in v.outcome("H2").to_test
    v = verdict_from_folders(ev, probe_text=text_run(tmp_path, "t0", n_fwer=0, beyond=0))
    assert v.outcome("H1").outcome == "not supported" and v.outcome("H3").outcome == "not supported"
    # 5 pairs, every sign vector enumerated: the smallest attainable p_fwer is 1/16 > 0.05
    v = verdict_from_folders(ev, probe_text=text_run(tmp_path, "t5", n_pairs=5, n_perm=16, exact=True))
    h1 = v.outcome("H1")
    assert h1.outcome == "not tested" and h1.power["smallest_p_fwer"] == 1 / 16 and "0.0625 > 0.05" in h1.reason
    h3 = verdict_from_folders(ev, probe_text=text_run(tmp_path, "tj", joint_attainable=False)).outcome("H3")
    assert h3.outcome == "not tested" and "no unit could meet it" in h3.reason
    v = verdict_from_folders(ev, probe_text=text_run(tmp_path, "tp", controls=("paraphrase",)))
    h3 = v.outcome("H3")
    assert h3.outcome == "not tested" and "vocabulary" in h3.reason
    assert "--control paraphrase --control vocabulary" in h3.to_test
    v = verdict_from_folders(ev)
    assert all(v.outcome(h).outcome == "not tested" and "--probe-text" in v.outcome(h).reason
               for h in ("H1", "H2", "H3"))


def test_text_hypotheses_on_a_known_answer_model_are_not_tested_and_say_why(tmp_path):
    v = verdict_from_folders(evaluate_folder(tmp_path, record=KNOWN))
    for h in ("H1", "H2", "H3"):
        o = v.outcome(h)
        assert o.outcome == "not tested" and "never on text-to-image prompts" in o.reason
        assert "--model black-forest-labs/FLUX.2-klein-base-4B" in o.to_test and "known-albedo --" not in o.to_test
    assert "never on text-to-image prompts" in v.markdown()


def test_h2_ranks_the_text_run_among_its_population(tmp_path):
    ev = evaluate_folder(tmp_path)
    run = text_run(tmp_path, "t", n_fwer=5)
    pop = population(tmp_path, "pop19", text_run, 19, n_fwer=1)
    h2 = verdict_from_folders(ev, probe_text=run, population_text=pop).outcome("H2")
    assert h2.outcome == "supported" and h2.observed["rank_p"] == 0.05 and h2.power == {"K": 19, "floor": 0.05}
    same = population(tmp_path, "pop19same", text_run, 19, n_fwer=5)
    h2 = verdict_from_folders(ev, probe_text=run, population_text=same).outcome("H2")
    assert h2.outcome == "not supported" and h2.observed["rank_p"] == 1.0
    small = population(tmp_path, "pop5", text_run, 5, n_fwer=1)
    h2 = verdict_from_folders(ev, probe_text=run, population_text=small).outcome("H2")
    assert h2.outcome == "not tested" and "K >= 19" in h2.reason and h2.power["floor"] == pytest.approx(1 / 6)


# ------------------------------------------------------------------------------------------ H4 (image probe)

def test_h4_needs_both_classes_beyond_the_population(tmp_path):
    ev = evaluate_folder(tmp_path)
    pop = population(tmp_path, "pop", image_run, 19, lighting=1, albedo=1)
    h4 = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i", lighting=4, albedo=3),
                              population_images=pop).outcome("H4")
    assert h4.outcome == "supported" and h4.power["K"] == 19
    assert {c: r["rank_p"] for c, r in h4.observed["ranks"].items()} == {"lighting-selective": 0.05,
                                                                          "albedo-selective": 0.05}
    h4 = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i1", lighting=4, albedo=1),
                              population_images=pop).outcome("H4")
    assert h4.outcome == "not supported" and h4.observed["ranks"]["albedo-selective"]["rank_p"] == 1.0
    h4 = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i2")).outcome("H4")
    assert h4.outcome == "not tested" and "--randomize-seeds 0-18" in h4.to_test and "--stimuli images" in h4.to_test
    small = population(tmp_path, "pop3", image_run, 3, lighting=1, albedo=1)
    h4 = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i3"), population_images=small).outcome("H4")
    assert h4.outcome == "not tested" and "K >= 19" in h4.reason
    assert verdict_from_folders(ev).outcome("H4").outcome == "not tested"


def test_population_calibration_note_says_what_k_19_can_show(tmp_path):
    """Ranked against the other 18, no member of a population of 19 can reach 0.05: the note says that 0 is then the
    only possible rate and where the rate at 0.05 is measured, and whether the tie-free ranks are uniform."""
    ev = evaluate_folder(tmp_path)
    pop = population(tmp_path, "pop", image_run, 19, lighting=1, albedo=1)
    v = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i", lighting=4, albedo=3), population_images=pop)
    (note,) = [n for n in v.notes if "population calibration" in n]
    assert "floor is 1 / 19 > 0.05" in note and "bench_population.py" in note
    assert "none of its statistics is free of ties" in note        # identical members: every statistic tied
    assert "population calibration" in v.markdown()


def test_h4_reads_the_change_classes_and_shows_the_scalar_classes_as_context(tmp_path):
    """H4 counts the change classes (probe.stats.change); the scalar `class` counts, which found nothing in a network
    known to decompose, are ranked beside them as context; a run without change classes is not tested."""
    ev = evaluate_folder(tmp_path)
    pop = population(tmp_path, "pop", image_run, 19, lighting=1, albedo=1)
    h4 = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i", lighting=4, albedo=3, scalar=(0, 0)),
                              population_images=pop).outcome("H4")
    assert h4.outcome == "supported" and h4.observed["counts"] == {"lighting-selective": 4, "albedo-selective": 3}
    assert h4.observed["scalar_class_counts"] == {"lighting-selective": 0, "albedo-selective": 0}
    assert h4.observed["scalar_class_ranks"]["albedo-selective"]["rank_p"] == 1.0
    h4 = verdict_from_folders(ev, probe_images=image_run(tmp_path, "i0", lighting=4, albedo=3, change=False),
                              population_images=pop).outcome("H4")
    assert h4.outcome == "not tested" and "no change classes" in h4.reason and "--stimuli images" in h4.to_test


# ------------------------------------------------------------------------------------------ H5, H6 (evaluate folder)

def test_h5_all_four_cis_below_zero_and_says_which_ci(tmp_path):
    h5 = verdict_from_folders(evaluate_folder(tmp_path, "a")).outcome("H5")
    assert h5.outcome == "supported" and h5.observed["ci_kind"] == "percentile" and len(h5.observed["cells"]) == 4
    h5 = verdict_from_folders(evaluate_folder(tmp_path, "b", his=(-0.1, -0.1, -0.1, 0.01))).outcome("H5")
    assert h5.outcome == "not supported"
    # the percentile CIs exclude 0, the studentised one of one cell does not: the studentised one decides
    h5 = verdict_from_folders(evaluate_folder(tmp_path, "c", stud=(-0.05, -0.05, -0.05, 0.02))).outcome("H5")
    assert h5.outcome == "not supported" and h5.observed["ci_kind"] == "studentized"
    assert h5.power == {"n_samples": 50, "n_clusters": 25, "n_boot": 1000, "ci": "studentized"}
    # 3 base scenes: score_summary.json writes the unbounded studentised CI as strings
    h5 = verdict_from_folders(evaluate_folder(tmp_path, "u", stud=("inf", -0.05, -0.05, -0.05))).outcome("H5")
    assert h5.outcome == "not tested" and "unbounded" in h5.reason
    h5 = verdict_from_folders(evaluate_folder(tmp_path, "d", klein=False)).outcome("H5")
    assert h5.outcome == "not tested" and "evaluate generate" in h5.to_test


def test_h6_rank_p_at_every_k_with_enough_draws(tmp_path):
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "a", ablation=ablation(0.05))).outcome("H6")
    assert h6.outcome == "supported" and h6.power["floor"] == 0.05 and set(h6.observed["by_k"]) == {"8", "32"}
    abl = ablation(0.05)
    abl["by_k"]["32"]["metrics"]["lmse_linear_scalar"]["rank_p_top_hurts_more"] = 0.3
    assert verdict_from_folders(evaluate_folder(tmp_path, "b", ablation=abl)).outcome("H6").outcome == "not supported"
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "c", ablation=ablation(1 / 3, draws=2))).outcome("H6")
    assert h6.outcome == "not tested" and "needs >= 19 different draws" in h6.reason and "--n-random 19" in h6.to_test
    assert "--select change_albedo" in h6.to_test
    # an older ablation whose 19 draws were one draw repeated (4-head blocks): 1 different draw, not tested
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "c2", ablation=ablation(0.05, distinct=False))).outcome("H6")
    assert h6.outcome == "not tested" and "1 different random draws" in h6.reason
    # fewer albedo-selective heads than k: the top-k were filled with others, so no set of selective heads exists
    abl = ablation(0.05)
    abl["by_k"]["8"]["selection"].update(n_eligible=0, n_filled=8)
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "c4", ablation=abl)).outcome("H6")
    assert h6.outcome == "not tested" and "only 0 albedo-selective heads" in h6.reason
    # heads chosen by another rule (the card's contrast): not tested, its rank p as context
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "c3", ablation=ablation(0.05, select="render_vs_albedo"))
                              ).outcome("H6")
    assert h6.outcome == "not tested" and "render_vs_albedo" in h6.reason and "rank p 0.05" in h6.reason
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "d")).outcome("H6")
    assert h6.outcome == "not tested" and "no ablation.json" in h6.reason
    # top-k helps while every random draw hurts (known-albedo's case): not supported, the other tail said as context
    abl = ablation(1.0)
    for k in ("8", "32"):
        abl["by_k"][k]["metrics"]["lmse_linear_scalar"].update(top_harm_mean=-0.006,
                                                               random_draw_means=[0.006 + 1e-4 * i for i in range(19)])
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "e", ablation=abl)).outcome("H6")
    assert h6.outcome == "not supported" and "opposite to the claim" in h6.reason
    assert h6.observed["by_k"]["8"]["rank_p_top_hurts_less"] == 0.05
    # context: what the draws came from and whether their harm followed their selective-head count
    abl = ablation(0.3)
    abl["by_k"]["8"]["selection"]["random_pool"] = {"n_heads": 27, "n_eligible": 9, "by_region": {"img": 9, "ref": 18}}
    abl["by_k"]["8"]["harm_vs_n_eligible"] = {"rho": -0.06, "n_draws": 19}
    h6 = verdict_from_folders(evaluate_folder(tmp_path, "f", ablation=abl)).outcome("H6")
    assert h6.outcome == "not supported" and h6.observed["by_k"]["8"]["random_pool"]["n_eligible"] == 9
    assert ("k = 8: the draws came from 27 heads, 9 of them selective by the same rule (img 9, ref 18 by token "
            "region); over the draws, harm against their selective-head count: Spearman rho -0.06 (19 draws)") in h6.reason


# ------------------------------------------------------------------------------------------ command line, refusals

def test_cli_writes_verdict_and_config_and_prints_it(tmp_path, capsys):
    from evaluate.__main__ import main

    ev = evaluate_folder(tmp_path, ablation=ablation(0.05))
    assert main(["verdict", "--evaluate", str(ev), "--probe-text", str(text_run(tmp_path)),
                 "--out", str(tmp_path / "v")]) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "v" / "verdict.md").read_text()
    assert printed == md and md.startswith("**RANDOM WEIGHTS (not a finding)")
    data = json.loads((tmp_path / "v" / "verdict.json").read_text())
    assert [h["outcome"] for h in data["hypotheses"]] == ["supported", "not tested", "supported", "not tested",
                                                          "supported", "supported"]
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    assert cfg["job"] == "evaluate verdict" and cfg["criteria"] == data["criteria"] and cfg["alpha"] == 0.05


def _refused(capsys, tmp_path, argv, match):
    from evaluate.__main__ import main

    out = tmp_path / "refused"
    assert main(["verdict", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_refusals_write_nothing(tmp_path, capsys):
    ev = evaluate_folder(tmp_path)
    _refused(capsys, tmp_path, ["--evaluate", str(tmp_path / "nope")], "evaluate folder not found")
    (tmp_path / "empty").mkdir()
    _refused(capsys, tmp_path, ["--evaluate", str(tmp_path / "empty")], "holds no score_summary.json")
    run = text_run(tmp_path, "t")
    one = population(tmp_path, "one", text_run, 1)
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--probe-text", str(run), "--population-text", str(one)],
             "population of one")
    other_design = population(tmp_path, "pairs12", text_run, 3, n_pairs=12)
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--probe-text", str(run), "--population-text",
                                str(other_design)], "was not made with the population's design")
    known_run = text_run(tmp_path, "known", record=KNOWN)
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--probe-text", str(known_run)],
             "the inputs were made with different models")
    known_pop = population(tmp_path, "knownpop", text_run, 3, record=KNOWN)
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--probe-text", str(run), "--population-text",
                                str(known_pop)], "untrained copies of --model known-albedo")
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--population-text", str(known_pop)], "without its run")
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--probe-images", str(run)], "is a text probe run")
    # the same model name with other weights (a retrained snapshot): the fingerprints differ
    retrained = dict(KNOWN, model="other")
    with pytest.raises(VerdictError, match="different models"):
        verdict_from_folders(evaluate_folder(tmp_path, "ek", record=KNOWN),
                             probe_images=image_run(tmp_path, "retrained", record=retrained))
    # predictions scored but the record of the model that made them missing
    lost = evaluate_folder(tmp_path, "lost")
    for f in (lost / "pred" / "klein").iterdir():
        f.unlink()
    _refused(capsys, tmp_path, ["--evaluate", str(lost)], "cannot tell which model")


# ------------------------------------------------------------------------------------------ the real formats (tiny)

def test_verdict_reads_what_the_jobs_write(tmp_path, tiny_cache, capsys):
    """On the tiny model: an image probe, a population of 2 made with its design and an evaluate folder, in the
    files the jobs write. The model records match (content fingerprints); a member of the population given as the
    run is another network and is refused; the population's K = 2 cannot reach 0.05, so H4 is not tested."""
    from evaluate.__main__ import main as evaluate_main
    from probe.__main__ import main as probe_main
    from tests.fakes import write_synthetic_render_variants

    data = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta", "gamma"), h=16, w=16)
    common = ["--model", "tiny", "--stimuli", "images", "--data", str(data), "--steps", "1", "--capture-steps", "0",
              "--guidance", "1.0", "--n-perm", "100", "--n-boot", "0", "--n-splits", "0", "--quiet", "--no-report"]
    assert probe_main(["run", *common, "--out", str(tmp_path / "p")]) == 0
    assert probe_main(["run", *common, "--randomize", "transformer", "--randomize-seeds", "0-1",
                       "--out", str(tmp_path / "pop")]) == 0
    ev = tmp_path / "e"
    assert evaluate_main(["generate", "--model", "tiny", "--data", str(data), "--steps", "1", "--limit", "4",
                          "--quiet", "--out", str(ev)]) == 0
    assert evaluate_main(["score", "--data", str(data), "--out", str(ev), "--n-boot", "20"]) == 0
    capsys.readouterr()
    v = verdict_from_folders(ev, probe_images=tmp_path / "p", population_images=tmp_path / "pop")
    assert v.model["identity"]["fingerprint"].startswith("content-sha256:") and v.banner.startswith("RANDOM WEIGHTS")
    h4 = v.outcome("H4")
    assert h4.outcome == "not tested" and h4.power["K"] == 2 and str(tmp_path / "pop") in h4.to_test
    h5 = v.outcome("H5")      # 4 samples of one base scene: no interval can be bounded
    assert h5.outcome == "not tested" and "unbounded" in h5.reason and h5.power["n_clusters"] == 1, h5
    _refused(capsys, tmp_path, ["--evaluate", str(ev), "--probe-images", str(tmp_path / "pop" / "seed-0001")],
             "--randomize transformer seed 1")

"""`probe compare` made trustworthy (issue 17.2) and the population of untrained networks (issue 16.3).

Within-network test: calibrated when two runs mix effect sizes differently (the basic bootstrap it replaced was
not), refusal of runs that differ in pairs or seeds per pair, labels from each run's own config with CLUSTERED
in compare.md. Population: rank p and its leave-one-out calibration (numpy), then on the tiny model a population
of 5 made in one command (encodings shared, resumable), a member equal to the same seed run on its own, a run
ranked among the population in compare.json, and the refusals (mismatched designs, a population of one)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from probe.io.captures import Captures, load_captures, save_captures
from probe.io.runs import CompareError
from probe.stats.config import StatsConfig


def _as_run(diff, pair_ids):
    n, u = diff.shape
    return SimpleNamespace(captures=Captures(a=diff.astype(np.float32), b=np.zeros((n, u), np.float32),
                                             units=np.array([f"u{i}" for i in range(u)]),
                                             pair_ids=np.array(pair_ids)))


# ------------------------------------------------------------------------------------- within-network test

def test_within_network_test_holds_when_runs_mix_effect_sizes():
    """Issue 17.2's simulation: every unit d_z 0.35 in one run, half null and half 0.553 in the other (equal expected
    mean |t| at 25 pairs), paired. The basic bootstrap says 'run 1 > run 2' far above 5 % one way; the test now used
    stays near 5 % both ways (benchmarks/bench_compare.py: 200 simulations each way at 2,000 units)."""
    from probe.stats.compare import within_network_test

    n, units, sims = 25, 1000, 60
    ids = [f"p{i}" for i in range(n)]
    rates = {}
    for uniform_first in (True, False):
        rng = np.random.default_rng(11 + uniform_first)
        new = old = 0
        for s in range(sims):
            e_uni, e_mix = np.full(units, 0.35), np.zeros(units)
            e_mix[units // 2:] = 0.553
            e1, e2 = (e_uni, e_mix) if uniform_first else (e_mix, e_uni)
            r1 = _as_run(e1 + rng.normal(size=(n, units)), ids)
            r2 = _as_run(e2 + rng.normal(size=(n, units)), ids)
            res = within_network_test(r1, r2, r1.captures.units, n_boot=200, seed=s)
            new += res["p_run1_greater"] <= 0.05
            old += res["basic_bootstrap"]["p_run1_greater"] <= 0.05
            assert res["ci"][0] < res["S"] < res["ci"][1] and res["se"] == res["se_bootstrap"] > 0
        rates[uniform_first] = (new / sims, old / sims)
    assert max(old for _, old in rates.values()) >= 0.2, rates       # the failure the issue reported, reproduced
    pooled = sum(new for new, _ in rates.values()) / 2                # 120 simulations: 5 % +- 2.0 % (MC sd)
    assert pooled <= 0.10 and max(new for new, _ in rates.values()) <= 0.15, rates


def test_within_network_test_power_and_unpaired_jackknife():
    """A real shift in run 1 is found; runs with different pair ids use the jackknife SE (the independent bootstrap's
    spread is inflated by resamples that share nothing) and a null stays null."""
    from probe.stats.compare import jackknife_abs_t_mean, within_network_test

    rng = np.random.default_rng(3)
    n, units = 20, 200
    ids = [f"p{i}" for i in range(n)]
    shift = np.zeros(units)
    shift[:40] = 1.2
    r1, r2 = _as_run(shift + rng.normal(size=(n, units)), ids), _as_run(rng.normal(size=(n, units)), ids)
    res = within_network_test(r1, r2, r1.captures.units, n_boot=300)
    assert res["p_run1_greater"] < 0.001 and res["ci"][0] > 0 and "paired" in res["resampling"]
    # different pair ids: the jackknife SE matches the spread of S over repeated experiments; the spread of
    # independent bootstrap resamples does not (resamples with many repeated pairs raise every |t| of one run)
    s_values, se_jack, se_boot = [], [], []
    for _ in range(60):
        one = _as_run(rng.normal(0.3, 1, size=(n, units)), ids)
        two = _as_run(rng.normal(0.3, 1, size=(n, units)), [f"q{i}" for i in range(n)])
        null = within_network_test(one, two, r1.captures.units, n_boot=100)
        s_values.append(null["S"])
        se_jack.append(null["se"])
        se_boot.append(null["se_bootstrap"])
    assert "jackknife" in null["ci_kind"] and null["se"] == null["se_jackknife"]
    assert 0.7 < np.mean(se_jack) / np.std(s_values, ddof=1) < 1.4
    assert np.mean(se_boot) / np.std(s_values, ddof=1) > 1.5
    # the leave-one-out means equal a brute-force recomputation (t = 0 for a zero-variance unit)
    d = rng.normal(0.3, 1, size=(7, 30))
    d[:, 4] = 1.0
    brute = []
    for i in range(7):
        x = np.delete(d, i, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = x.mean(0) / (x.std(0, ddof=1) / np.sqrt(6))
        t[4] = 0.0
        brute.append(np.abs(t).mean())
    np.testing.assert_allclose(jackknife_abs_t_mean(d), brute, rtol=1e-12)


def _synthetic_run(root: Path, name: str, n: int = 12, units: int = 60, seed: int = 0, seeds_per_pair: int = 1,
                   effect: float = 0.0, model: str = "tiny", randomize: dict | None = None, capture: dict | None = None,
                   first_unit: int = 0):
    from probe.jobs.finish import analyse_and_write

    rng = np.random.default_rng(seed)
    names = [f"s00/double.{i // 12}.img/h{i % 12:02d}" for i in range(first_unit, first_unit + units)]
    a, b = rng.normal(size=(n, units)), rng.normal(size=(n, units))
    a[:, :10] += effect
    caps = Captures(a=a, b=b, units=np.array(names), pair_ids=np.array([f"p{i}" for i in range(n)]),
                    unit_blocks=np.array([u.rsplit("/", 1)[0] for u in names]),
                    meta={"seeds_per_pair": seeds_per_pair, "noise": "per-pair"})
    out = root / name
    save_captures(out / "captures.npz", caps)
    cfg = {"capture": {"protocol": "heads", "steps": 1, "capture_steps": [0], **(capture or {})},
           "noise": {"noise": "per-pair", "seed": 0, "seeds_per_pair": seeds_per_pair},
           "model": {"model": model, "source": "tiny", "random_weights": True,
                     "randomize": randomize or {"mode": "none"}}}
    analyse_and_write(caps, out, cfg, StatsConfig(n_perm=200, n_boot=0, n_splits=5), no_report=True)
    return out


def test_compare_refuses_runs_that_differ_in_pairs_or_seeds_per_pair(tmp_path, capsys):
    from probe.__main__ import main
    from probe.stats.compare import compare_runs

    a = _synthetic_run(tmp_path, "a", n=12)
    fewer = _synthetic_run(tmp_path, "fewer", n=8, seed=1)
    more_seeds = _synthetic_run(tmp_path, "seeds", n=12, seed=2, seeds_per_pair=3)
    with pytest.raises(CompareError, match=r"run 1 \(.*\) has 12 pairs, run 2 \(.*\) 8.*--units any"):
        compare_runs([a, fewer], n_boot=50)
    with pytest.raises(CompareError, match="run 1 averages 1 noise draws per pair .*run 2 3"):
        compare_runs([a, more_seeds], n_boot=50)
    assert compare_runs([a, fewer], units="any")["comparisons"] == []       # side by side, no test
    scale_free = compare_runs([a, fewer], n_boot=50, allow_unequal_pairs=True)   # renders beside photographs
    c = scale_free["comparisons"][0]
    assert not c["test"]["available"] and "not comparable" in c["test"]["why"] and "rho" in c["agreement"]
    from probe.report.compare import render_markdown

    assert "**No mean-|t| test (--allow-unequal-pairs):**" in render_markdown(scale_free)
    out = tmp_path / "never"
    assert main(["compare", str(a), str(more_seeds), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "seeds-per-pair" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    res = compare_runs([a, _synthetic_run(tmp_path, "b", n=12, seed=3)], n_boot=100)
    test = res["comparisons"][0]["test"]
    assert res["comparisons"][0]["within_network_noise_test"] == test and "within-network noise only" in test["scope"]
    assert {"S", "ci", "p_run1_greater", "p_two_sided", "n_boot", "resampling", "bootstrap_sd_S"} <= set(test)


def test_compare_labels_each_run_from_its_own_config(tmp_path):
    """An image run whose primary contrast is lighting, with pairs over samples: its label, the stimuli row and a
    CLUSTERED line in compare.md say so (they used to say 'render - albedo image, pairs = base scenes')."""
    from probe.design.image_stimuli import ImageDesign, build_image_plan
    from probe.jobs.finish import finish_run
    from probe.report.compare import write_compare
    from probe.stats.compare import compare_runs
    from tests.fakes import write_synthetic_render_variants

    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta", "gamma"), h=16, w=16)
    design = ImageDesign(build_image_plan(root, pairs_over="samples", contrasts=["lighting", "albedo"]), "flat", seed=1)
    rng = np.random.default_rng(0)
    units = [f"s00/double.0.ref/h{i:02d}" for i in range(6)]
    args = SimpleNamespace(n_perm=100, n_splits=0, n_boot=0, stats_seed=0, equivalence_margin=None, no_report=True)
    runs = []
    for k in range(2):
        values = {s.key(): rng.normal(size=6).astype(np.float32) for s in design.stimuli()}
        config = {"capture": {"protocol": "heads"}, "direction": "a-b", "noise": design.record(),
                  "model": {"model": "tiny", "source": "tiny", "random_weights": True}}
        finish_run(tmp_path / f"run{k}", design, values, units, config, args)
        runs.append(tmp_path / f"run{k}")
    res = compare_runs(runs, n_boot=50)
    row = res["runs"][0]
    assert row["primary_contrast"] == "lighting" and row["pairs_over"] == "samples" and row["clustered"]
    assert "images: lighting, pairs over samples (CLUSTERED)" in row["label"]
    md = write_compare(res, tmp_path / "cmp")[0].read_text()
    assert "contrast `lighting`: A − B = harder lighting - softer lighting" in md
    assert "**CLUSTERED (run 1: --pairs-over samples)" in md and "render − albedo image" not in md


def test_a_run_of_another_design_is_refused_field_by_field(tmp_path):
    """The population check names what differs: pairs, seeds per pair, steps, protocol, unit set (no model)."""
    from probe.io.runs import Population, load_run
    from probe.stats.population import check_design, population_comparison

    rnd = {"mode": "transformer", "seed": 0}
    members = [load_run(_synthetic_run(tmp_path, f"m{k}", seed=k, randomize={**rnd, "seed": k})) for k in range(3)]
    pop = Population(tmp_path, {"randomize": "transformer"}, members, [0, 1, 2], [])
    same = load_run(_synthetic_run(tmp_path, "same", seed=9, effect=2.0, model="acme/klein"))
    res = population_comparison([same], pop)
    assert res["K"] == 3 and res["runs"][0]["statistics"][0]["rank_p"] is not None
    assert any("--model acme/klein" in note for note in res["notes"])
    cases = {"n_pairs": dict(n=10), "seeds_per_pair": dict(seeds_per_pair=2), "capture.steps": dict(capture={"steps": 4}),
             "protocol": dict(capture={"protocol": "card"}), "unit set": dict(first_unit=12)}
    for field, kwargs in cases.items():
        other = load_run(_synthetic_run(tmp_path, f"other-{field}", seed=5, **kwargs))
        with pytest.raises(CompareError, match=f"was not made with the population's design.*{field}"):
            check_design([other], pop)
    odd = Population(tmp_path, {}, [*members[:2], load_run(tmp_path / "other-n_pairs")], [0, 1, 2], [])
    with pytest.raises(CompareError, match="is not one population: its member other-n_pairs"):
        check_design([same], odd)


# ------------------------------------------------------------------------------------------- rank p (numpy)

def test_rank_p_ties_and_leave_one_out_are_exact():
    from probe.stats.population import calibration, leave_one_out, rank_p

    r = rank_p(7.0, [1, 2, 7, 9, 3])
    assert r["rank_p"] == (1 + 2) / 6 and r["floor"] == 1 / 6 and r["K"] == 5 and r["rank_p_lower"] == (1 + 4) / 6
    assert rank_p(100.0, list(range(19)))["rank_p"] == 0.05            # above all 19: the floor, 1 / 20
    assert rank_p(0.0, [0] * 19)["rank_p"] == 1.0                      # ties count against the run
    vals = np.random.default_rng(0).normal(size=(5, 40))
    vals[:, 0] = 3.0                                                   # one statistic tied in every member
    ps = leave_one_out(vals)
    for j in range(1, 40):                                             # tie-free: exactly {1/5, ..., 5/5}
        np.testing.assert_allclose(np.sort(ps[:, j]), np.arange(1, 6) / 5)
    assert (ps[:, 0] == 1.0).all()
    rows = [[{"key": f"s{j}", "level": "run", "value": float(vals[i, j])} for j in range(40)] for i in range(5)]
    cal = calibration(rows, alpha=0.2)
    assert cal["uniform_on_grid"] and cal["n_statistics_tie_free"] == 39 and cal["expected_rate_without_ties"] == 0.2
    assert cal["rate_p_le_alpha_tie_free"] == pytest.approx(0.2) and cal["rate_p_le_alpha"] < 0.2


# ---------------------------------------------------------------------------------- population (tiny model)

POP_ARGS = ("--model", "tiny", "--limit", "3", "--steps", "1", "--capture-steps", "0", "--guidance", "1.0",
            "--n-perm", "200", "--n-boot", "0", "--n-splits", "5", "--quiet", "--no-report")


@pytest.fixture(scope="module")
def population(tmp_path_factory, tiny_cache):
    """A population of K = 5 made in one command (in process: the entry point of the command line)."""
    from probe.__main__ import main

    root = tmp_path_factory.mktemp("population")
    pop = root / "pop"
    assert main(["run", *POP_ARGS, "--randomize", "transformer", "--randomize-seeds", "0-4", "--out", str(pop)]) == 0
    alone = root / "alone"       # seed 2 on its own, in a fresh load: must equal the population's member
    assert main(["run", *POP_ARGS, "--randomize", "transformer", "--randomize-seed", "2", "--out", str(alone)]) == 0
    return SimpleNamespace(root=root, pop=pop, alone=alone)


def test_population_is_made_in_one_command_with_shared_encodings(population):
    pop = population.pop
    record = json.loads((pop / "population.json").read_text())
    assert [m["seed"] for m in record["members"]] == [0, 1, 2, 3, 4] and record["n_finished"] == 5
    assert all(m["status"] == "finished" and (pop / m["folder"] / "units.csv").is_file() for m in record["members"])
    shared = record["shared_encodings"]
    # 3 pairs x 4 prompts in batches of 4 = 3 text calls per member: computed by the first, reused by the other 4
    assert shared["text_encoder_calls"] == 3 and shared["text_encoder_reused"] == 4 * 3
    cfg = json.loads((pop / "seed-0003" / "config.json").read_text())
    assert cfg["model"]["randomize"]["seed"] == 3 and cfg["population"]["seed"] == 3
    assert cfg["capture_info"]["cache_fields"]["randomize"] == {"mode": "transformer", "seed": 3}
    member, alone = load_captures(pop / "seed-0002" / "captures.npz"), load_captures(population.alone / "captures.npz")
    np.testing.assert_array_equal(member.a, alone.a)          # the shared encodings and the re-initialisation
    np.testing.assert_array_equal(member.b, alone.b)          # change no value
    other = load_captures(pop / "seed-0003" / "captures.npz")
    assert not np.allclose(member.a, other.a)


def test_population_resumes_and_grows(population, tmp_path, capsys):
    """The same command again reuses every finished network; a longer seed list adds only the new ones; a folder
    holding a population of other settings is refused."""
    from probe.__main__ import main

    pop = tmp_path / "pop"
    shutil.copytree(population.pop, pop)
    before = (pop / "seed-0001" / "units.csv").stat().st_mtime_ns
    assert main(["run", *POP_ARGS, "--randomize", "transformer", "--randomize-seeds", "0-5", "--out", str(pop)]) == 0
    err = capsys.readouterr().err
    assert err.count("finished earlier: reused") == 5 and "network 6 of 6 (seed 5)" in err
    assert (pop / "seed-0001" / "units.csv").stat().st_mtime_ns == before
    record = json.loads((pop / "population.json").read_text())
    assert record["n_finished"] == 6 and record["seeds"] == [0, 1, 2, 3, 4, 5]
    other = [a if a != "3" else "4" for a in POP_ARGS]
    assert main(["run", *other, "--randomize", "transformer", "--randomize-seeds", "0-5", "--out", str(pop)]) == 2
    err = capsys.readouterr().err
    assert "holds a population made with other settings" in err and "design" in err


def test_a_run_is_ranked_among_the_population(population, tmp_path):
    from probe.__main__ import main

    out = tmp_path / "cmp"
    assert main(["compare", str(population.alone), "--population", str(population.pop), "--out", str(out)]) == 0
    res = json.loads((out / "compare.json").read_text())
    pop = res["population"]
    assert pop["K"] == 5 and pop["seeds"] == [0, 1, 2, 3, 4] and pop["floor"] == pytest.approx(1 / 6)
    rows = {r["key"]: r for r in pop["runs"][0]["statistics"]}
    for key in ("main/n_fwer_significant", "main/max_abs_t", "main/n_abs_t_gt_3", "vs_vocabulary/n_fwer_significant",
                "selective/n_selective_beyond_control"):
        assert key in rows, key
    mx = rows["main/max_abs_t"]
    assert mx["population"][2] == mx["observed"]               # the run is seed 2's network: its own value is there
    assert mx["rank_p"] == (1 + sum(v >= mx["observed"] for v in mx["population"])) / 6
    assert mx["population_min"] <= mx["population_median"] <= mx["population_max"]
    assert {"statistic", "observed", "population", "rank_p", "floor", "K"} <= set(mx)
    blocks = [r for r in pop["runs"][0]["statistics"] if r["level"] == "block"]
    assert {r["statistic"] for r in blocks} == {"max_abs_t", "n_fwer_significant"} and len(blocks) == 2 * 6
    cal = pop["calibration"]
    assert cal["n_members"] == 5 and cal["uniform_on_grid"] and cal["n_statistics_tie_free"] > 0
    md = (out / "compare.md").read_text()
    assert "## Against K untrained networks" in md and "1 / (1 + K) = 0.167" in md and "0.05 needs K >= 19" in md
    assert "range over the 5 untrained networks" in md and (out / "compare_blocks.png").is_file()


def test_population_refusals(population, tmp_path, capsys):
    """A run of another design (here 4 pairs), a population of one (a command, and a folder), a run that
    is not a population: one paragraph each, exit 2, nothing written."""
    from probe.__main__ import main

    out = tmp_path / "never"
    bigger = population.root / "bigger"
    assert main(["run", *[a if a != "3" else "4" for a in POP_ARGS], "--randomize", "transformer",
                 "--randomize-seed", "2", "--out", str(bigger)]) == 0
    capsys.readouterr()
    cases = [
        (["compare", str(bigger), "--population", str(population.pop), "--out", str(out)],
         "was not made with the population's design"),
        (["compare", str(population.alone), "--population", str(population.alone), "--out", str(out)],
         "is not a population folder"),
        (["run", *POP_ARGS, "--randomize", "transformer", "--randomize-seeds", "3", "--out", str(out)],
         "a population of one is no population"),
        (["run", *POP_ARGS, "--randomize-seeds", "0-3", "--out", str(out)], "add --randomize transformer"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert "n_pairs" in main_err(bigger, population.pop, out, capsys)
    one = tmp_path / "one"                                      # a folder with one finished network
    shutil.copytree(population.pop, one)
    record = json.loads((one / "population.json").read_text())
    for m in record["members"][1:]:
        m["status"] = "missing"
    (one / "population.json").write_text(json.dumps(record))
    assert main(["compare", str(population.alone), "--population", str(one), "--out", str(out)]) == 2
    assert "A population of one is no population" in capsys.readouterr().err
    assert not out.exists()


def main_err(run, pop, out, capsys) -> str:
    from probe.__main__ import main

    assert main(["compare", str(run), "--population", str(pop), "--out", str(out)]) == 2
    return capsys.readouterr().err


def test_image_population_shares_reference_latents_and_changes_no_value(tmp_path, tiny_cache, capsys):
    """The image probe: the VAE encodes each reference once for the whole population (the VAE is never randomised),
    and a member's captures equal the same seed run on its own."""
    from probe.__main__ import main
    from tests.fakes import write_synthetic_render_variants

    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta"), h=16, w=16)
    args = ["--model", "tiny", "--stimuli", "images", "--data", str(root), "--steps", "1", "--capture-steps", "0",
            "--guidance", "1.0", "--n-perm", "100", "--n-boot", "0", "--n-splits", "0", "--quiet", "--no-report"]
    pop, alone = tmp_path / "pop", tmp_path / "alone"
    assert main(["run", *args, "--randomize", "transformer", "--randomize-seeds", "4,7", "--out", str(pop)]) == 0
    assert main(["run", *args, "--randomize", "transformer", "--randomize-seed", "7", "--out", str(alone)]) == 0
    shared = json.loads((pop / "population.json").read_text())["shared_encodings"]
    n_images = json.loads((pop / "seed-0004" / "config.json").read_text())["capture_info"]["pipeline_calls"]
    assert shared["vae_shared"] and shared["vae_encodes"] == n_images and shared["vae_reused"] == n_images
    assert shared["text_encoder_calls"] == 1           # one fixed editing text: encoded once for every image and seed
    member, own = load_captures(pop / "seed-0007" / "captures.npz"), load_captures(alone / "captures.npz")
    np.testing.assert_array_equal(member.images.values, own.images.values)
    assert "population" in capsys.readouterr().out
    # the image probe's class counts and per-contrast rows are ranked, read generically from summary.json
    assert main(["compare", str(alone), "--population", str(pop), "--out", str(tmp_path / "cmp")]) == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["population"]["runs"][0]["statistics"]
    keys = {r["key"] for r in rows}
    counts = json.loads((alone / "summary.json").read_text())["classes"]["counts"]
    assert {f"classes/{c}" for c in counts} <= keys and {"lighting/n_fwer_significant", "albedo/max_abs_t"} <= keys
    assert any(r["level"] == "block" and r["contrast"] == "lighting" for r in rows)
    assert any(r["level"] == "block" and r["statistic"] == "class_count" for r in rows)


def test_a_randomised_real_model_prepares_references_as_the_trained_one():
    """--randomize on a real model must not switch the image probe to the tiny model's 64-px references: the
    untrained networks would see other images than the trained run (and the population would be refused)."""
    from probe.klein.edit_capture import ReferencePrep

    pipe = SimpleNamespace(vae_scale_factor=8)
    real_random = SimpleNamespace(source="hub", random_weights=True, pipe=pipe)
    assert ReferencePrep.like_evaluate(real_random).max_side == 1024
    assert ReferencePrep.like_evaluate(SimpleNamespace(source="tiny", random_weights=True, pipe=pipe)).max_side == 64

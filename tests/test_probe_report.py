"""probe.report.write_report on synthetic captures (no torch, no model): heads and card unit names,
with and without a control set, the random-weights banner, figures that exist and are PNGs, the
published card's numbers beside this run's, and the few-pairs edge."""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from PIL import Image

from probe.report.run_report import CARD_TOP_BLOCKS, FIGURE_NAMES, RANDOM_WEIGHTS_LINE, write_report
from probe.report.units import parse_units
from probe.io.captures import Captures, ControlSet
from probe.stats.analysis import analyse_captures
from probe.stats.config import StatsConfig

FAST = StatsConfig(n_perm=200, n_boot=50, n_splits=20, seed=0)
CARD_NUMBERS = ("10,846 (66.5%)", "7.6×", "7,445 (45.6%)", "1,489×", "9,136 (56.0%)", "0.912 [0.91, 0.92]",
                "34.48")
PLANTED = ("s00/double.0.img/h01", "s05/double.1.txt/h02", "s05/single.1/h03")


def head_units(steps=(0, 5), n_double=2, n_single=2, n_heads=4) -> list[str]:
    names = []
    for s in steps:
        for i in range(n_double):
            for stream in ("img", "txt"):
                names += [f"s{s:02d}/double.{i}.{stream}/h{h:02d}" for h in range(n_heads)]
        for i in range(n_single):
            names += [f"s{s:02d}/single.{i}/h{h:02d}" for h in range(n_heads)]
    return names


def card_units(n_double=2, n_single=2, double_ch=64, single_ch=256, width=16) -> list[str]:
    names = [f"s00/double.{i}.img/c{c:04d}-{c + width - 1:04d}" for i in range(n_double)
             for c in range(0, double_ch, width)]
    names += [f"s00/single.{i}/c{c:04d}-{c + width - 1:04d}" for i in range(n_single)
              for c in range(0, single_ch, width)]
    return names


def make_run(units, n_pairs=12, control=True, planted=(), seed=0, config=FAST, vocabulary=False, direction="a-b"):
    """Captures as `probe run` writes them: the control sets' A is the main A (same prompt, same noise)."""
    rng = np.random.default_rng(seed)
    u = len(units)
    a = rng.normal(size=(n_pairs, u)).astype(np.float32)
    b = rng.normal(size=(n_pairs, u)).astype(np.float32)
    for name in planted:
        b[:, units.index(name)] -= 4.0      # B (albedo) only: d_z ~ 2.8 against A and against every control
    ids = np.array([f"p{i:02d}" for i in range(n_pairs)])
    ca = cb = None
    if control:
        ca, cb = a.copy(), rng.normal(size=(n_pairs, u)).astype(np.float32)
    named = {"vocabulary": ControlSet(a.copy(), rng.normal(size=(n_pairs, u)).astype(np.float32), ids)} \
        if vocabulary else {}
    caps = Captures(a=a, b=b, units=np.array(units), pair_ids=ids, control_a=ca, control_b=cb,
                    control_pair_ids=ids if control else None, controls=named, meta={"direction": direction})
    res = analyse_captures(caps, config)
    return caps, res


def run_config(protocol="heads", random_weights=False, steps=(0, 5)) -> dict:
    return {
        "capture": {"protocol": protocol, "steps": 8 if protocol == "heads" else 1,
                    "capture_steps": list(steps), "guidance": 4.0 if protocol == "heads" else 1.0,
                    "height": 64, "width": 64, "reducer": "rms", "single_tokens": "img", "seed": 0},
        "model": {"model": "tiny" if random_weights else "black-forest-labs/FLUX.2-klein-base-4B",
                  "source": "tiny" if random_weights else "hub", "random_weights": random_weights,
                  "dtype": "float32", "device": "cpu", "revision": None},
        "prompts": {"pairs": "prompts/pairs.jsonl", "control": "prompts/control.jsonl"},
        "capture_info": {"seconds": 1.5, "forwards_per_step": 2, "n_image_tokens": 16},
        "text_lengths": {"a": [30, 41], "b": [28, 39]},
        "captured_forward": "conditional (first of the two CFG forwards per step)",
    }


def summary_of(res, protocol, random_weights):
    s = res.summary()
    s["protocol"] = protocol
    s["random_weights"] = random_weights
    return s


def figure_links(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md)


def check_figures(out, md: str) -> list[str]:
    """Every linked figure exists, is a PNG of modest size and has a caption right after it."""
    links = figure_links(md)
    lines = md.splitlines()
    for link in links:
        path = out / link
        assert path.is_file(), link
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            w, h = im.size
        assert 100 < w <= 1700 and 100 < h <= 1700, (link, im.size)
        i = next(k for k, line in enumerate(lines) if f"({link})" in line)
        caption = next(line for line in lines[i + 1:] if line.strip())
        assert caption.startswith("*Figure ") and len(caption) > 60, caption
    return [link.split("/", 1)[1] for link in links]


def row(md: str, label: str) -> str:
    hits = [line for line in md.splitlines() if line.startswith(f"| {label} |")]
    assert len(hits) == 1, (label, hits)
    return hits[0]


# ----------------------------------------------------------------------------------------- tests

def test_heads_report_with_control_random_weights(tmp_path):
    units = head_units()
    caps, res = make_run(units, planted=PLANTED)
    summary = summary_of(res, "heads", True)
    path = write_report(tmp_path, caps, res, summary, run_config(random_weights=True))
    assert path == tmp_path / "report.md"
    md = path.read_text()
    assert md.splitlines()[0] == RANDOM_WEIGHTS_LINE
    assert "nothing in this report is a finding" in md.splitlines()[0]

    figs = check_figures(tmp_path, md)
    assert set(figs) == set(FIGURE_NAMES)          # all five, control and step profile included
    for number in CARD_NUMBERS:
        assert number in md, number
    for card_name, *_ in CARD_TOP_BLOCKS:
        assert card_name in md

    # this run's numbers, beside the card's in the same row
    n3 = summary["n_abs_t_gt_3"]
    assert f"{n3:,} ({100 * n3 / len(units):.1f}%)" in row(md, r"units with \|t\| > 3")
    assert "10,846 (66.5%)" in row(md, r"units with \|t\| > 3")
    assert f"{summary['max_abs_t']:.2f}" in row(md, r"max \|t\|")
    # effect sizes: the card's row is d_z, with the sentence, and d_av beside it
    nd = summary["n_abs_d_z_gt_0_8"]
    assert f"{nd:,} (" in row(md, r"units with \|d_z\| > 0.8 (the card's “\|d\| > 0.8 (large)”)")
    assert f"{summary['n_abs_d_av_gt_0_8']:,} (" in row(md, r"units with \|d_av\| > 0.8 (between-condition scale)")
    assert "at 12 pairs it is exactly |t| > 2.77" in md and "inflates d_z far above" in md
    assert summary["max_abs_t_unit"] in PLANTED and summary["max_abs_t_unit"] in row(md, r"max \|t\|")
    fw = summary["n_fwer_significant"]
    assert fw >= len(PLANTED)
    assert f"{fw:,} (" in row(md, r"FWER-significant units (tmax null, α = 0.05)")
    sel = summary["n_selective_beyond_control"]
    assert sel >= len(PLANTED)
    assert f"{sel:,} (" in row(md, "units selective beyond every control (`selective_beyond_control`)")
    # its error level is stated (one control set: 2 families, main and the direct test), with the joint column
    assert "family-wise error ≤ 2 × α = 0.1" in row(md, "units selective beyond every control (`selective_beyond_control`)")
    assert f"{summary['n_selective_beyond_control_joint']:,} (" in row(
        md, "… with every family at α/2 (`selective_beyond_control_joint`; family-wise error ≤ α = 0.05)")
    assert "**Error level of `selective_beyond_control`.**" in md and "intersection-union test" in md
    assert f"{summary['n_selective_vs_paraphrase']:,} (" in row(
        md, "units selective beyond the paraphrase control (`selective_vs_paraphrase`)")
    assert "paraphrase control (12 pairs, A vs a paraphrase of A)" in md and "RANDOM WEIGHTS)" in md

    # top blocks: the planted blocks lead, with their bootstrap intervals
    top = md.split("## Top blocks by max |t|")[1].split("\n\n")[1]
    first = top.splitlines()[2]
    assert any(p.rsplit("/", 1)[0] in first for p in PLANTED), first
    assert re.search(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", first)
    assert "need not cover the point estimate" in md

    # what was run, units and files
    for text in ("Card units vs heads", "5 joint blocks × 192", "768 = 12,288 / 16", "three quarters",
                 "conditional (first of the two CFG forwards per step)", "64×64", "head_dim",
                 "padding", "200 sign vectors (random, seeded)", "paraphrase: 12 pairs",
                 "2 double.img sites × 4 heads + 2 double.txt sites × 4 heads + 2 single sites × 4 heads = 24",
                 "python -m probe stats --from captures.npz --out DIR", "`control_a`", "`selective_beyond_control`",
                 "summary.json", "config.json"):
        assert text in md, text
    # the per-step table splits the counts by step
    assert "| 0 | 24 |" in md and "| 5 | 24 |" in md


def test_report_module_does_not_import_torch_or_pyplot():
    import subprocess

    code = ("import sys, probe.report.run_report, probe.report.images, probe.report.compare; "
            "assert 'torch' not in sys.modules and 'matplotlib.pyplot' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_banner_without_random_weights_and_banner_from_config(tmp_path):
    caps, res = make_run(head_units(), planted=PLANTED)
    md = write_report(tmp_path / "real", caps, res, summary_of(res, "heads", False), run_config()).read_text()
    assert md.splitlines()[0].startswith("# ") and "RANDOM WEIGHTS" not in md
    assert "black-forest-labs/FLUX.2-klein-base-4B" in md
    # the model record alone marks random weights too: honest labelling does not hinge on one key
    md2 = write_report(tmp_path / "cfg", caps, res, summary_of(res, "heads", False),
                       run_config(random_weights=True)).read_text()
    assert md2.splitlines()[0] == RANDOM_WEIGHTS_LINE


def test_card_unit_names_without_control(tmp_path):
    units = card_units()
    layout = parse_units(units)
    assert layout.kind == "card" and layout.slice_width == 16
    assert layout.rows() == ["double.0.img", "double.1.img", "single.0", "single.1"]
    assert layout.col[units.index("s00/single.1/c0240-0255")] == 15
    assert layout.col[units.index("s00/double.1.img/c0048-0063")] == 3

    caps, res = make_run(units, control=False, planted=("s00/single.0/c0016-0031",))
    md = write_report(tmp_path, caps, res, summary_of(res, "card", False),
                      run_config("card", steps=(0,))).read_text()
    figs = check_figures(tmp_path, md)
    assert set(figs) == {"t_heatmap.png", "null_counts.png", "split_half.png"}
    assert "Not drawn: this run has no control set" in md
    assert "Not drawn: one captured step only." in md
    assert "16-channel slice" in md and "MLP channels" in md and "`s00/double.0.img/c0000-0015`" in md
    assert "this run (card, 40 units, 12 pairs)" in md
    assert "none in this run" in row(md, "control sets (direct tests)")
    assert "2 double.img sites × 4 slices + 2 single sites × 16 slices = 40 units per step" in md
    for number in CARD_NUMBERS:
        assert number in md
    # the card's own top blocks looked up in this run by site
    assert "| single[0] (= single.0) | 34.48 | 510/768 | 1.00 | s00/single.0 |" in md

    # a rerun into the same folder without these figures leaves no stale PNG behind
    caps2, res2 = make_run(head_units(), planted=PLANTED)
    write_report(tmp_path, caps2, res2, summary_of(res2, "heads", False), run_config())
    caps3, res3 = make_run(units, control=False)
    md3 = write_report(tmp_path, caps3, res3, summary_of(res3, "card", False), run_config("card", steps=(0,)))
    assert not (tmp_path / "figures" / "control.png").exists()
    assert not (tmp_path / "figures" / "step_profile.png").exists()
    check_figures(tmp_path, md3.read_text())


@pytest.mark.parametrize("n_pairs", [3, 4])
def test_few_pairs(tmp_path, n_pairs):
    caps, res = make_run(head_units(), n_pairs=n_pairs, planted=PLANTED)
    summary = summary_of(res, "heads", True)
    md = write_report(tmp_path, caps, res, summary, run_config(random_weights=True)).read_text()
    assert md.splitlines()[0] == RANDOM_WEIGHTS_LINE
    figs = check_figures(tmp_path, md)
    assert {"t_heatmap.png", "null_counts.png", "control.png", "step_profile.png"} <= set(figs)
    split_row = row(md, "split-half r, median [IQR]")
    if np.isfinite(res.main.split.median):
        assert "split_half.png" in figs and f"{res.main.split.median:.3f}" in split_row
    else:
        assert "split_half.png" not in figs and "n/a" in split_row
        assert f"split-half needs at least 4 pairs (this run has {n_pairs})" in md
    if n_pairs == 3:
        # 4 sign vectors (exact): the smallest FWER p is 1/4, so no unit can be significant
        assert res.main.null.exact and res.main.null.n_perm == 4 and not res.main.null.significant.any()
        assert "no unit can reach p ≤ 0.05 with 4 sign vectors" in md


def test_other_unit_names_fall_back_to_blocks(tmp_path):
    units = [f"u{i}" for i in range(10)]
    layout = parse_units(units)
    assert layout.kind == "other" and layout.rows() == ["all"] and list(layout.col) == list(range(10))
    caps, res = make_run(units, control=False)
    md = write_report(tmp_path, caps, res, summary_of(res, None, False), {}).read_text()
    assert md.splitlines()[0].startswith("# ")
    figs = check_figures(tmp_path, md)
    assert "t_heatmap.png" in figs and "Not drawn: the unit names carry no step." in md
    assert "not recorded" in row(md, "model")


def test_report_first_lines_without_random_init_comparison_and_two_controls(tmp_path):
    from probe.report.run_report import RANDOM_REFERENCE

    caps, res = make_run(head_units(), planted=PLANTED, vocabulary=True)
    cfg = {**run_config(), "job": "probe run", "argv": ["probe/__main__.py", "run", "--model", "x", "--out", "o"]}
    md = write_report(tmp_path, caps, res, summary_of(res, "heads", False), cfg).read_text()
    head = md.split("## Headline")[0]
    assert md.splitlines()[0].startswith("# ray-plantain probe")
    assert "The card's statistics do not tell a trained network from an untrained one" in head
    ref = RANDOM_REFERENCE
    assert f"{ref['card']['pct_abs_t_gt_3']:.1f} %" in head and f"{ref['heads']['split_half_r']:.3f}" in head
    assert ref["card"]["command"] in head
    # the control it asks for is a population of untrained networks, and the rank among them (issue 16)
    assert "python -m probe run --model x --randomize transformer --randomize-seeds 0-18 --out" in head
    assert "--population" in head and "19-45 %" in head
    for name in ("paraphrase", "vocabulary"):
        assert f"units selective beyond the {name} control (`selective_vs_{name}`)" in md
        assert f"direct test {name} control prompt vs B: FWER-significant units" in md
    assert "control.png" in check_figures(tmp_path, md)
    assert "significant here and not there" in md


def test_card_sign_convention_in_the_report(tmp_path):
    caps, res = make_run(card_units(), control=False, planted=("s00/single.0/c0016-0031",), direction="b-a")
    cfg = {**run_config("card", steps=(0,)), "direction": res.direction,
           "resolution_source": "pipeline default (default_sample_size x vae_scale_factor)"}
    md = write_report(tmp_path, caps, res, summary_of(res, "card", False), cfg).read_text()
    assert "t = B albedo - A photograph" in md and "red means higher for the albedo prompt B" in md
    assert "the card family's t = mean(second − first)" in md
    table = md.split("## The card's protocol")[1].split("\n\n")[1]
    assert "| one inference step | stated by a sibling plantain card |" in table
    assert "| 25 paired prompts (A rendered photograph, B albedo) | stated by the card |" in table
    assert "| resolution | our reconstruction | 64×64 (pipeline default" in table
    assert res.t[caps.units.tolist().index("s00/single.0/c0016-0031")] < 0     # planted: B lower, so B - A < 0

"""`python -m evaluate`'s command line: each default printed once, and bad inputs give a one-paragraph
error (exit 2, no traceback) before anything is loaded or overwritten."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fakes import fake_probe_units, write_fake_probe, write_synthetic_render


def _subparsers():
    from evaluate.__main__ import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", ["generate", "baselines", "score", "ablate", "link", "report", "all"])
def test_help_prints_each_default_once(command):
    p = _subparsers()[command]
    fmt = p._get_formatter()
    for action in p._actions:
        if not action.help or action.help == argparse.SUPPRESS:
            continue
        text = fmt._expand_help(action)
        assert text.lower().count("default") <= 1, f"{command} {action.option_strings}: {text!r}"
    shown = {a.dest: fmt._expand_help(a) for a in p._actions if a.help}
    if "model" in shown:                 # the shared model flags say their default once too
        assert shown["model"].count("black-forest-labs/FLUX.2-klein-base-4B") == 1
    if "n_boot" in shown:
        assert shown["n_boot"].endswith("(default: 1000)")


def run(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "evaluate", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def _one_paragraph(r):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    err = r.stderr.strip()
    assert err and "\n\n" not in err and err.count("\n") == 0, err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = write_synthetic_render(root / "render", scenes=("alpha",), lightings=("key",))
    units = fake_probe_units()
    t = np.zeros(len(units))
    t[3] = 9
    probe = write_fake_probe(root / "probe", {"unit": units, "t": t}, {"stimuli": "text"})
    out = root / "eval"
    out.mkdir()
    (out / "ablation_plan.json").write_text('{"kept": true}')
    return data, probe, out


@pytest.mark.parametrize("args,needle", [
    (["ablate", "--k", "abc"], "--k takes comma-separated positive integers"),
    (["ablate", "--k", "0,4"], "--k takes comma-separated positive integers"),
    (["ablate", "--k", "4", "--n-random", "0"], "--n-random must be >= 1"),
    (["ablate", "--k", "4", "--select", "lighting"], "needs an image probe"),
    (["all", "--model", "tiny", "--k", "abc"], "--k takes"),
    (["generate", "--model", "tiny", "--steps", "0"], "--steps: must be >= 1"),
    (["ablate", "--select", "shading"], "invalid choice"),
])
def test_bad_inputs_one_paragraph_nothing_written(folders, args, needle):
    data, probe, out = folders
    before = sorted(p.name for p in out.rglob("*"))
    r = run(*args, "--data", str(data), "--probe", str(probe), "--out", str(out)) if args[0] != "generate" else \
        run(*args, "--data", str(data), "--out", str(out))
    _one_paragraph(r)
    assert needle in r.stderr
    assert sorted(p.name for p in out.rglob("*")) == before                  # no config.json, no pred/
    assert json.loads((out / "ablation_plan.json").read_text()) == {"kept": True}   # not overwritten


def test_score_quiet_drops_the_progress_bar(tmp_path, capsys):
    """`evaluate baselines/score --quiet`: no progress bar on stderr, the summary line stays (as every job's)."""
    from evaluate.__main__ import main

    data = write_synthetic_render(tmp_path / "render", scenes=("alpha",), lightings=("key", "rim"))
    out = tmp_path / "eval"
    assert main(["baselines", "--data", str(data), "--out", str(out), "--quiet"]) == 0
    assert "%|" not in capsys.readouterr().err
    assert main(["score", "--data", str(data), "--out", str(out), "--lpips", "off", "--n-boot", "50"]) == 0
    loud = capsys.readouterr()
    assert main(["score", "--data", str(data), "--out", str(out), "--lpips", "off", "--n-boot", "50", "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert "score" in loud.err and "%|" in loud.err        # tqdm's bar
    assert "%|" not in quiet.err and "scored" in quiet.out + quiet.err

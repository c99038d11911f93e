"""Every job's --help works without importing torch, bpy, diffusers or transformers (that keeps it fast)."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("job,args", [("render", []), ("render", ["import-mit"]), ("probe", []), ("probe", ["run"]),
                                      ("probe", ["stats"]), ("evaluate", []), ("evaluate", ["generate"]),
                                      ("evaluate", ["score"]), ("evaluate", ["mit"]), ("evaluate", ["verdict"]), ("evaluate", ["study"]), ("probe", ["known"]),
                                      ("probe", ["known", "train"])])
def test_help_is_light(job, args):
    code = ("import sys, runpy\n"
            f"sys.argv = ['{job}', *{args!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_module('{job}', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "heavy = sorted(m for m in ('torch', 'bpy', 'diffusers', 'transformers') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage: python -m" in r.stdout
    assert "HEAVY []" in r.stdout, r.stdout[-300:]


def _subcommands(module: str) -> dict:
    import argparse
    import importlib

    parser = importlib.import_module(f"{module}.__main__").build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("module,command", [("probe", c) for c in ("run", "stats", "prompts", "compare", "merge")])
def test_probe_help_prints_each_default_once(module, command):
    """The probe's options say their default once (in their own words, or argparse's "(default: X)"), as
    evaluate's do (tests/test_evaluate_cli.py); the shared formatter is probe.io.helpformat.HelpFormatter."""
    import argparse

    p = _subcommands(module)[command]
    fmt = p._get_formatter()
    shown = {}
    for action in p._actions:
        if not action.help or action.help == argparse.SUPPRESS:
            continue
        text = fmt._expand_help(action)
        assert text.lower().count("(default") <= 1 and not ("(default:" in text and "(default " in text), \
            f"probe {command} {action.option_strings}: {text!r}"
        shown[action.dest] = text
    if "model" in shown:
        assert shown["model"].count("black-forest-labs/FLUX.2-klein-base-4B") == 1
    if "n_splits" in shown:
        assert shown["n_splits"].endswith("(default 100)")

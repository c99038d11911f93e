"""Every job's --help works without importing torch, bpy, diffusers or transformers (that keeps it fast)."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("job,args", [("render", []), ("probe", []), ("probe", ["run"]), ("probe", ["stats"]),
                                      ("evaluate", []), ("evaluate", ["generate"]), ("evaluate", ["score"])])
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

"""scripts/demo.sh stays true: every `python -m JOB ...` line it runs parses with that job's own command line,
and the folders it hands from one step to the next are the ones the earlier steps write."""
from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


def _commands() -> list[list[str]]:
    text = DEMO.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("python -m "):
            out.append(shlex.split(line)[2:])
    return out


def test_the_demo_runs_every_job():
    jobs = [c[0] for c in _commands()]
    assert {"render", "probe", "evaluate"} <= set(jobs), jobs


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a[:3]))
def test_every_demo_command_parses(argv):
    parser = importlib.import_module(f"{argv[0]}.__main__").build_parser()
    args = parser.parse_args(argv[1:])          # an unknown or renamed flag exits 2 here
    assert args is not None


def test_the_demo_reads_what_it_wrote():
    written, read = set(), []
    for argv in _commands():
        opts = dict(zip(argv, argv[1:]))
        for flag in ("--data", "--probe"):
            if flag in opts:
                read.append(opts[flag])
        read += [a for a in argv[2:] if a.startswith("runs/") and argv[:2] == ["probe", "compare"]
                 and not a == opts.get("--out")]
        if "--out" in opts:
            written.add(opts["--out"])
    assert read and set(read) <= written, (read, written)

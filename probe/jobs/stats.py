"""`python -m probe stats`: captures.npz -> statistics -> units.csv, summary.json, report (no model, no torch).

    python -m probe stats --from runs/probe/captures.npz --out runs/probe-restat
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from probe.io.errors import UsageError
from probe.jobs.finish import analyse_and_write, load_baseline, print_summary, stats_config


def main_stats(args) -> int:
    from probe.io.captures import load_captures

    src = Path(args.captures)
    if not src.is_file():
        raise UsageError(f"{src} not found: pass the captures.npz written by `python -m probe run`")
    caps = load_captures(src)
    out = Path(args.out)
    prior = {}
    cfg_path = src.parent / "config.json"
    if cfg_path.is_file():
        try:
            prior = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            prior = {}
    protocol = caps.meta.get("protocol") or prior.get("capture", {}).get("protocol", "heads")
    stats_cfg = stats_config(args, protocol, caps.meta.get("equivalence_margin"), caps.meta.get("magnitude_margin"))
    baseline = load_baseline(args, out)
    config = {"job": "probe stats", "argv": sys.argv, "from": str(src), "stimuli": caps.stimuli,
              **{k: prior[k] for k in ("capture", "model", "prompts", "images", "resolution_source", "noise",
                                       "control_sets", "n_pairs", "text_lengths", "prompt_token_lengths",
                                       "captured_forward") if k in prior}}
    config.setdefault("capture", {"protocol": protocol})
    summary = analyse_and_write(caps, out, config, stats_cfg, args.no_report, baseline)
    print_summary(out, summary)
    return 0

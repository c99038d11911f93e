"""`python -m evaluate generate --status N`: which predictions of a sharded generate run are missing.

Every sample of the render manifest is checked for the method (and, unless --no-baselines, the
baselines that generate also writes), split N ways as `--shard K/N` splits it; `--limit` applies
per shard to the method as it does in generate. A prediction counts as finished when its files read back and
its key's reference image is the one in the render folder now (a re-rendered sample's old prediction is listed:
generate would redo it). No model is loaded. Exit 0 complete, 3 incomplete.
"""
from __future__ import annotations

from pathlib import Path

from evaluate.baselines import BASELINE_METHODS
from evaluate.generate import DataError, load_render_manifest
from evaluate.predictions import prediction_state
from render.status import RENDER_RESUBMIT, merge_status, print_status, shard_status

RESUBMIT = RENDER_RESUBMIT


def main_generate_status(args) -> int:
    if args.status < 1:
        raise DataError(f"--status N needs N >= 1 (the number of shards), got {args.status}")
    ids = sorted(e["id"] for e in load_render_manifest(args.data)["samples"])
    pred = Path(args.out) / "pred"
    shas: dict = {}        # reference sha256 by path: every method reads the same images
    methods = [(args.method, args.limit)] + ([] if args.no_baselines else [(m, None) for m in BASELINE_METHODS])
    parts = [shard_status("evaluate generate", str(pred), ids,
                          lambda i, m=m: prediction_state(pred, m, i, args.data, shas),
                          args.status, limit=limit, label=lambda i, m=m: f"{m}/{i}")
             for m, limit in methods]
    return print_status(merge_status(parts, f"evaluate generate ({', '.join(m for m, _ in methods)})"), RESUBMIT)

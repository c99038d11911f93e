"""`python -m probe run ... --randomize transformer --randomize-seeds 0-18 --out POP`: a population of untrained
networks in one command, for `probe compare RUN --population POP`.

    python -m probe run --model black-forest-labs/FLUX.2-klein-base-4B --randomize transformer \\
        --randomize-seeds 0-18 --out runs/population
    python -m probe compare runs/probe --population runs/population --out runs/compare-population

Layout: POP/seed-0000/, POP/seed-0001/, ... (one per seed), each a normal run folder (captures.npz, units.csv,
summary.json, config.json with a `population` block, report.md), and POP/population.json, the record that
`compare` reads: the planned seeds, the members (seed, folder, status), the key every member shares, the
design, capture and statistics settings, and what the shared encodings saved.

Cost. The model is loaded once. Each member re-initialises the randomised components with its seed
(`probe.klein.model.rerandomize`: the same weights `--randomize-seed S` gives on its own) and captures the
design; the text encoder's outputs (and, for the image probe, the reference latents) are computed by the first
member and reused by every other (`probe.klein.shared_encodings`), so each further network costs only its
transformer forwards. With `--randomize all` the text encoder changes with every member and is encoded again.

Resuming. Every member keeps its own partial_captures.npz (keyed as in `probe run`, the seed included), so a
killed population resumes inside the member it stopped in; a member whose folder is finished with this
population's key and statistics settings is skipped; one finished with other statistics settings gets its
statistics again from its cached values (no model forwards). The population's key (the capture settings,
model revision, randomisation mode, dtype, device type, library versions, the design and its noise) is in
population.json and every member's config.json: a folder that holds a population made with another key is
refused, so two populations never mix. Several processes (one per node or GPU, each with its own seed range)
may write into one folder: population.json is rebuilt from the finished member folders each time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from probe.io.errors import UsageError
from probe.io.jsonio import versions, write_json
from probe.io.runs import POPULATION_FILE

__all__ = ["parse_seeds", "member_folder", "main_population", "POPULATION_FORMAT"]

POPULATION_FORMAT = "ray-plantain-population/1"


def parse_seeds(text: str) -> list[int]:
    """'0-18' -> [0, ..., 18]; '0,3,5-7' -> [0, 3, 5, 6, 7] (sorted, duplicates once); UsageError otherwise."""
    seeds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                seeds.update(range(lo_i, hi_i + 1))
            else:
                seeds.add(int(part))
        except ValueError:
            raise UsageError(f"--randomize-seeds {text!r}: give seeds as a range or a list, e.g. 0-18 or 0,3,5-9 "
                             "(non-negative integers); nothing was written") from None
    if any(s < 0 for s in seeds) or not seeds:
        raise UsageError(f"--randomize-seeds {text!r}: seeds must be non-negative integers; nothing was written")
    return sorted(seeds)


def member_folder(seed: int) -> str:
    return f"seed-{int(seed):04d}"


def _check_args(args) -> list[int]:
    """Everything about the population options that can be refused before anything is loaded or written."""
    if args.randomize == "none":
        raise UsageError("--randomize-seeds makes a population of untrained networks: add --randomize transformer "
                         "(fresh transformer weights per seed, the text encoder and VAE kept; or --randomize all); "
                         "nothing was written")
    if args.randomize_seed not in (0, None):
        raise UsageError("--randomize-seed and --randomize-seeds cannot be combined: --randomize-seeds lists every "
                         "seed of the population; nothing was written")
    seeds = parse_seeds(args.randomize_seeds)
    if len(seeds) < 2:
        raise UsageError(
            f"--randomize-seeds {args.randomize_seeds!r} gives {len(seeds)} network: a population of one is no "
            "population (one random-init run said 'different' for two untrained networks in 19-45 % of simulations, "
            "and a rank among K networks cannot go below 1 / (1 + K)); give at least 2 seeds, and 19 (0-18) to reach "
            "0.05. For a single random-init run use --randomize-seed S; nothing was written")
    if getattr(args, "shard", None):
        raise UsageError("--shard splits one run's pairs and cannot be combined with --randomize-seeds: split a "
                         "population by seeds instead (each node its own --randomize-seeds range, all into the same "
                         "--out folder); nothing was written")
    if getattr(args, "baseline", None):
        raise UsageError("--baseline compares one run with a control and cannot be combined with --randomize-seeds: "
                         "rank a run among the population with `python -m probe compare RUN --population OUT`; "
                         "nothing was written")
    return seeds


def _population_key(fields: dict, design) -> dict:
    """What every member of one population shares: the resume key's fields without the seed, and the design."""
    fields = json.loads(json.dumps(fields, default=str))
    fields["randomize"] = {"mode": (fields.get("randomize") or {}).get("mode")}
    return {"capture": fields, "stimuli": design.kind, "design": json.loads(json.dumps(design.record(), default=str))}


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _finished(sub: Path, key_hash: str) -> dict | None:
    """The member's config.json when `sub` is a finished member of the population with `key_hash`, else None."""
    if not ((sub / "summary.json").is_file() and (sub / "units.csv").is_file()):
        return None
    cfg = _read(sub / "config.json")
    if not cfg or (cfg.get("population") or {}).get("key_hash") != key_hash:
        return None
    return cfg


def _write_record(out: Path, base: dict, key_hash: str, planned: list[int], timing: dict) -> dict:
    """population.json rebuilt from the member folders on disk (several processes may write one population)."""
    old = _read(out / POPULATION_FILE) or {}
    planned = sorted(set(planned) | {int(s) for s in old.get("seeds", [])} if old.get("key_hash") == key_hash
                     else set(planned))
    for sub in sorted(out.glob("seed-*")):
        cfg = _finished(sub, key_hash)
        if cfg is not None:
            planned = sorted(set(planned) | {int(cfg["population"]["seed"])})
    members = []
    for seed in planned:
        sub = out / member_folder(seed)
        cfg = _finished(sub, key_hash)
        entry = {"seed": seed, "folder": member_folder(seed), "status": "finished" if cfg else "missing"}
        if cfg:
            info = cfg.get("capture_info") or {}
            entry.update({"capture_seconds": info.get("seconds"), "captured_now": info.get("captured_now"),
                          "from_cache": info.get("from_cache")})
        if seed in timing:
            entry["seconds_this_process"] = timing[seed]
        members.append(entry)
    record = {**base, "seeds": planned, "members": members,
              "n_finished": sum(m["status"] == "finished" for m in members)}
    write_json(out / POPULATION_FILE, record)
    return record


def main_population(args) -> int:
    from probe.jobs.finish import check_out, finish_run, stats_config
    from probe.jobs.run import _capture_config, _reference_prep, _shard, load_design, run_record
    from probe.klein.capture_loop import cache_fields, capture_stimuli, fields_key
    from probe.klein.model import load_pipeline, rerandomize, spec_from_args
    from probe.klein.shared_encodings import SharedEncodings

    seeds = _check_args(args)
    out = Path(args.out)
    design, controls, sources = load_design(args)
    stats_cfg = stats_config(args, args.protocol)
    check_out(out)
    spec = dataclasses.replace(spec_from_args(args), randomize_seed=seeds[0])
    loaded = load_pipeline(spec)
    cfg, resolution_source = _capture_config(args, loaded)
    fields = cache_fields(cfg, loaded)
    key = _population_key({**fields, "change_dim": cfg.change_dim} if cfg.change_dim else fields, design)
    key_hash = _key_hash(key)
    old = _read(out / POPULATION_FILE)
    if old and old.get("key_hash") != key_hash:
        changed = _diff(old.get("key") or {}, key)
        what = ", ".join(changed[:6]) or "an older format"
        raise UsageError(f"{out} holds a population made with other settings ({what}"
                         f"{' and more' if len(changed) > 6 else ''} differ): its networks could not be ranked "
                         "together with new ones. Use another --out folder (or remove this one); nothing was written")
    mode = args.randomize
    print(f"note: population of {len(seeds)} untrained networks (--randomize {mode}, seeds {args.randomize_seeds}) "
          f"into {out}: random-init controls, never findings", file=sys.stderr)
    log = lambda msg: print(f"note: {msg}", file=sys.stderr)  # noqa: E731
    prepare = _reference_prep(args, loaded) if design.kind == "images" else None
    every = design.stimuli()
    base = {"format": POPULATION_FORMAT, "job": "probe run --randomize-seeds", "randomize": mode,
            "what": "untrained networks of one architecture (fresh seeded initialisations of the randomised "
                    "components), each measured with the same design; each folder is a normal run",
            "key_hash": key_hash, "key": key,
            "model": {k: v for k, v in loaded.describe().items() if k in ("model", "source", "resolved_path",
                                                                          "revision", "device", "dtype")},
            "capture": asdict(cfg), "stats": asdict(stats_cfg), "stimuli": design.kind,
            "n_pairs": len(design.pair_ids), "argv": sys.argv, "versions": versions(),
            "compare": f"python -m probe compare RUN --population {out} --out DIR"}
    timing: dict = {}
    started = time.perf_counter()
    done_now = 0
    shard = _shard(args)                      # the whole design (--shard is refused above)
    with SharedEncodings(loaded.pipe) as shared:
        for i, seed in enumerate(seeds):
            sub = out / member_folder(seed)
            prior = None if args.no_resume else _finished(sub, key_hash)
            if prior is not None and prior.get("stats") == json.loads(json.dumps(asdict(stats_cfg))):
                print(f"population: network {i + 1} of {len(seeds)} (seed {seed}) finished earlier: reused",
                      file=sys.stderr)
                continue
            t0 = time.perf_counter()
            if loaded.spec.randomize_seed != seed:
                loaded = rerandomize(loaded, seed)
                if mode == "all":
                    shared.invalidate("text_encoder")
            cache = sub / "partial_captures.npz"
            if args.no_resume and cache.exists():
                cache.unlink()
            eta = ""
            if done_now:
                per = (time.perf_counter() - started) / done_now
                left = sum(1 for s in seeds[i:] if _finished(out / member_folder(s), key_hash) is None)
                eta = f", about {per * left / 60:.1f} min left"
            print(f"population: network {i + 1} of {len(seeds)} (seed {seed}){eta}", file=sys.stderr)
            sub.mkdir(parents=True, exist_ok=True)
            change: dict = {}
            values, units, info = capture_stimuli(loaded, every, cfg, cache_path=cache, progress=not args.quiet,
                                                  log=log, desc=f"seed {seed} ({i + 1}/{len(seeds)})",
                                                  prepare_reference=prepare, change_out=change)
            config = run_record(args, loaded, cfg, resolution_source, design, controls, sources, info, shard, prepare)
            config["population"] = {
                "folder": str(out), "seed": seed, "index": i, "seeds": seeds, "key_hash": key_hash,
                "cache_key": fields_key(cache_fields(cfg, loaded)),
                "shared_encodings": "the text encoder's outputs (and reference latents) are shared by the members of "
                                    "this population: computed once, reused bit for bit (probe.klein.shared_encodings)",
                "shared_so_far": shared.record()}
            finish_run(sub, design, values, units, config, args, None, change=change or None)
            timing[seed] = round(time.perf_counter() - t0, 2)
            done_now += 1
            base["shared_encodings"] = shared.record()
            _write_record(out, base, key_hash, seeds, timing)
        base["shared_encodings"] = shared.record()
    record = _write_record(out, base, key_hash, seeds, timing)
    missing = [m["seed"] for m in record["members"] if m["status"] != "finished"]
    sh = base["shared_encodings"]
    print(f"population {out}: {record['n_finished']} finished networks (seeds {record['seeds'][0]}.."
          f"{record['seeds'][-1]}), {done_now} made now in {time.perf_counter() - started:.0f} s; text encoder "
          f"{sh['text_encoder_calls']} calls, {sh['text_encoder_reused']} reused; reference latents "
          f"{sh['vae_encodes']} encoded, {sh['vae_reused']} reused"
          + (f"; still missing: {missing}" if missing else ""))
    print(f"rank a run among them: python -m probe compare RUN --population {out} --out DIR")
    return 0


"""`python -m probe merge`: check the shards of a split probe run and finish it as one run (no model, no GPU).

    python -m probe run --shard auto --out runs/probe ...      # N processes (SLURM array, torchrun), one folder
    python -m probe merge runs/probe                           # -> runs/probe/captures.npz, units.csv, report ...
    python -m probe merge runs/probe-node1 runs/probe-node2 --out runs/probe
    python -m probe merge runs/probe --dry-run                 # what is missing, by shard; writes nothing

Every finished shard left `OUT/shards/partial-K-of-N.npz` (probe/design/shards.py). Before anything is written
the merge checks that
- every finished shard file has one configuration: the same capture settings, model revision,
  randomisation, dtype, device type and library versions (the resume key's fields), the same design
  (every stimulus's pair, role, draw, prompt, image content and seed) and the same unit set; otherwise
  it names the files and the fields that differ;
- every pair of the design is in a finished shard file, exactly once: missing pairs are named with the
  shard that owns them; a pair held by two files (a shard that ran twice, or two splits in one folder)
  counts once when both hold the same values (within float32 rounding, `DUPLICATE_TOLERANCE`), and is
  an error naming both files when they differ.
The design is rebuilt from the shards' recorded options, in the folder they ran in, and must match
the fingerprint they recorded (a pair file or render folder edited since is an error). The merged
values then go through the function `probe run` uses after its capture (`probe.jobs.finish.finish_run`):
captures.npz, units.csv, summary.json, config.json (with a `shards` list: each file, host, source
of its shard and capture time) and the report.
"""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from probe.io.errors import UsageError
from probe.jobs.errors import USER_ERRORS
from probe.klein.capture_loop import _differences
from probe.design.shards import (RUN_ONLY_ARGS, ShardFile, ShardFileError, design_fingerprint, find_shard_files,
                                 read_shard)

DUPLICATE_TOLERANCE = 1e-6      # |x - y| <= tol * (1 + |x|): a pair held twice "with identical values"
_LISTED = 10


class MergeError(UsageError):
    """The shards cannot be merged (one paragraph naming the files, fields or pairs; nothing is written)."""


@dataclass
class MergePlan:
    """What the shard files hold, checked against the design they were split from."""
    folders: list[Path]
    finished: list[ShardFile]
    unfinished: list[ShardFile]
    design: object
    expected: list[str]                                 # sorted unique pair ids of the design
    count: int                                          # N of the split used to name owners
    holder: dict[str, ShardFile] = field(default_factory=dict)     # pair -> the file its values come from
    doubles: dict[str, list[ShardFile]] = field(default_factory=dict)   # pairs held more than once, identically
    keys_of: dict[str, list[str]] = field(default_factory=dict)    # pair -> its stimuli's keys

    @property
    def missing(self) -> list[str]:
        return [p for p in self.expected if p not in self.holder]

    @property
    def complete(self) -> bool:
        return not self.missing

    def owner(self, pair: str) -> int:
        return self.expected.index(pair) % self.count

    def values(self) -> dict[str, np.ndarray]:
        """{stimulus key: values} over every pair, each pair's from the file that holds it."""
        out: dict[str, np.ndarray] = {}
        maps: dict[Path, dict] = {}
        for pair in self.expected:
            f = self.holder[pair]
            vm = maps.setdefault(f.path, f.value_map())
            for k in self.keys_of[pair]:
                out.setdefault(k, vm[k])
        return out

    def change(self) -> dict | None:
        """The image probe's change vectors {stimulus key: [units, dim]} and "__units__", each pair's from the
        `<file stem>_change/` folder beside the shard file that holds it (`probe.klein.capture_loop.ChangeStore`);
        None when the shards kept none (--change-dim 0). A holder whose folder is missing, was made with other
        capture settings, or lacks a stimulus is a MergeError."""
        from probe.klein.capture_loop import ChangeStore, fields_key

        dims = {int(((f.record or {}).get("config") or {}).get("capture", {}).get("change_dim") or 0)
                for f in self.used_files()}
        if dims == {0}:
            return None
        out: dict = {}
        stores: dict[Path, ChangeStore] = {}
        for pair in self.expected:
            f = self.holder[pair]
            if f.path not in stores:
                folder = f.path.parent / (f.path.stem + "_change")
                st = ChangeStore.read(folder)
                if st is None or st.key.get("fields_key") != fields_key(f.key_fields):
                    raise MergeError(f"{f.label()} was captured with change vectors (--change-dim), but {folder} is "
                                     f"{'missing' if st is None else 'from other capture settings'}: run the shard "
                                     "again with the same command (finished stimuli are skipped, their vectors "
                                     "recaptured). Nothing was written.")
                stores[f.path] = st
                out.setdefault("__units__", st.units)
            st = stores[f.path]
            for k in self.keys_of[pair]:
                if not st.has(k):
                    raise MergeError(f"{f.label()}: the change vector of stimulus {k!r} is missing from "
                                     f"{st.folder}: run the shard again with the same command. Nothing was written.")
                out.setdefault(k, st.get(k))
        return out

    def used_files(self) -> list[ShardFile]:
        seen = {id(f): f for f in self.holder.values()}
        return sorted(seen.values(), key=_order)


def _order(f: ShardFile):
    return (f.shard.count, f.shard.index, str(f.path))


# ------------------------------------------------------------------------------------------- checks


def _names(items: Sequence[str], limit: int = _LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _explain(ref: ShardFile, other: ShardFile) -> list[str]:
    """The fields in which `other` was made differently from `ref`."""
    out = _differences(ref.key_fields, other.key_fields)
    if other.fingerprint != ref.fingerprint:
        a = {k: v for k, v in ref.record.get("args", {}).items() if k not in RUN_ONLY_ARGS}
        b = {k: v for k, v in other.record.get("args", {}).items() if k not in RUN_ONLY_ARGS}
        opts = [f"--{d.replace('_', '-')}" for d in _differences(a, b)]
        out.append("the design (pairs, prompts, images or noise seeds" +
                   (f": {'; '.join(opts)})" if opts else "; same options, so an input file changed between the runs)"))
    if other.units != ref.units:
        only = sorted(set(other.units) ^ set(ref.units))
        out.append(f"the unit set ({len(ref.units)} -> {len(other.units)} units" +
                   (f", e.g. {only[0]}" if only else ", in another order") + ")")
    return out


def check_configuration(finished: Sequence[ShardFile]) -> None:
    """All finished shard files share one configuration key and unit set, else a MergeError naming the fields."""
    groups: dict[tuple, list[ShardFile]] = {}
    for f in finished:
        groups.setdefault((f.configuration_key, f.units), []).append(f)
    if len(groups) <= 1:
        return
    ref_group = max(groups.values(), key=lambda g: (len(g), -min(_order(f)[1] for f in g)))
    ref = min(ref_group, key=_order)
    parts = []
    for g in groups.values():
        if g is ref_group:
            continue
        files = sorted(g, key=_order)
        parts.append(f"{_names([f.label() for f in files], 4)} {'differs' if len(files) == 1 else 'differ'} from "
                     f"{ref.label()} in "
                     f"{'; '.join(_explain(ref, files[0])[:6]) or 'their recorded configuration key'}")
    newest = sorted(finished, key=lambda f: f.record.get("written", ""))
    raise MergeError(
        "cannot merge: the shard files were not all made with one configuration. " + ". ".join(parts) + ". Shards "
        "are merged only when everything that made their values is identical (capture settings, model revision, "
        "randomisation, dtype, device type, library versions, the design and the unit set). Run the odd shard(s) "
        "again with the same options as the others, or remove the files of an earlier run (written "
        f"{newest[0].record.get('written', '?')} to {newest[-1].record.get('written', '?')}). Nothing was written.")


def _clause(err: Exception) -> str:
    """An error message as a clause inside a longer one: without its own closing period and 'nothing was written'
    (the longer message says it once)."""
    import re

    return re.sub(r"[\s;,.]*\bnothing was written\b[\s.]*$", "", str(err).strip(), flags=re.I).rstrip(" .;,")


def rebuild_design(ref: ShardFile):
    """The design the shards were split from, rebuilt from `ref`'s recorded options in the folder it ran in."""
    from probe.jobs.run import load_design

    record = ref.record
    args = argparse.Namespace(**record.get("args", {}))
    cwd = record.get("cwd")
    here = contextlib.chdir(cwd) if cwd and Path(cwd).is_dir() else contextlib.nullcontext()
    try:
        with here:
            design = load_design(args)[0]
            stimuli = design.stimuli()
            fp = design_fingerprint(stimuli)
            keys = [(s.pair_id, s.key()) for s in stimuli]
    except USER_ERRORS as e:
        raise MergeError(f"cannot rebuild the design the shards were split from ({ref.label()} ran in {cwd} with "
                         f"{_shown_argv(record)}): {_clause(e)}. The merge needs the same input files (pair file, control "
                         f"files, render folder) the shards read. Nothing was written.") from None
    if fp != ref.fingerprint:
        raise MergeError(f"the design rebuilt from the shards' options ({_shown_argv(record)}, in {cwd}) is not the "
                         f"one they captured (design fingerprint {fp}, the shards recorded {ref.fingerprint}): a "
                         f"pair, control or image file was changed after the shards ran. Restore it, or run the "
                         f"shards again. Nothing was written.")
    return design, keys


def _shown_argv(record: dict) -> str:
    argv = list((record.get("config") or {}).get("argv") or [])
    return "`python -m probe " + shlex.join(argv[1:]) + "`" if argv else "options not recorded"


def plan_merge(folders: Sequence[str | Path]) -> MergePlan:
    """Read every shard file in `folders`, check configuration, design and pair coverage (see the module doc).

    Missing pairs are left in the plan (`missing`) for the caller: an error for a merge, a listing for
    --dry-run. Everything else that forbids a merge raises MergeError."""
    folders = [Path(f) for f in folders]
    for f in folders:
        if not f.exists():
            raise MergeError(f"{f} does not exist: pass the --out folder(s) of the shards (`python -m probe run "
                             f"--shard K/N --out DIR` writes DIR/shards/partial-K-of-N.npz)")
    paths = find_shard_files(folders)
    if not paths:
        raise MergeError(f"no shard files in {_names([str(f) for f in folders])}: `python -m probe run --shard K/N "
                         f"--out DIR` writes DIR/shards/partial-K-of-N.npz (an unsharded run needs no merge)")
    try:
        files = [read_shard(p) for p in paths]
    except ShardFileError as e:
        raise MergeError(f"{e}; remove it (its shard runs again with the same command) and merge again") from None
    count = Counter(f.shard.count for f in files).most_common(1)[0][0]     # the split that names owners
    # files of that split first: a pair held by several files takes its values from the first
    finished = sorted((f for f in files if f.finished), key=lambda f: (f.shard.count != count, *_order(f)))
    unfinished = sorted((f for f in files if not f.finished), key=_order)
    if not finished:
        plan = MergePlan(folders, [], unfinished, None, [], count)
        return plan
    check_configuration(finished)
    design, keys = rebuild_design(finished[0])
    keys_of: dict[str, list[str]] = {}
    for pair, key in keys:
        ks = keys_of.setdefault(pair, [])
        if key not in ks:
            ks.append(key)
    plan = MergePlan(folders, finished, unfinished, design, sorted(keys_of), count, keys_of=keys_of)
    _assign_pairs(plan)
    return plan


def _assign_pairs(plan: MergePlan) -> None:
    """Give every pair one holder; identical duplicates are counted once, conflicting ones raise MergeError."""
    expected = set(plan.expected)
    maps = {f.path: f.value_map() for f in plan.finished}
    holders: dict[str, list[ShardFile]] = {}
    for f in plan.finished:
        extra = sorted(set(f.pair_ids) - expected)
        if extra:
            raise MergeError(f"{f.label()} holds pairs the design does not have ({_names(extra, 5)}), although its "
                             f"design fingerprint matches: the file is damaged; remove it and run shard {f.shard} "
                             f"again. Nothing was written.")
        for p in f.pair_ids:
            lost = [k for k in plan.keys_of[p] if k not in maps[f.path]]
            if lost:
                raise MergeError(f"{f.label()} lists pair {p} but lacks {len(lost)} of its "
                                 f"{len(plan.keys_of[p])} stimuli: the file is damaged; remove it and run shard "
                                 f"{f.shard} again. Nothing was written.")
            holders.setdefault(p, []).append(f)
    conflicts = []
    for p, fs in holders.items():
        first = fs[0]
        for other in fs[1:]:
            worst = max(_max_rel_diff(maps[first.path][k], maps[other.path][k]) for k in plan.keys_of[p])
            if worst > DUPLICATE_TOLERANCE:
                conflicts.append((p, first, other, worst))
        plan.holder[p] = first
        if len(fs) > 1:
            plan.doubles[p] = fs
    if conflicts:
        shown = [f"{p} in {a.label()} and {b.label()} (largest difference {d:.3g} relative)"
                 for p, a, b, d in conflicts]
        files = sorted({f for _, a, b, _ in conflicts for f in (a, b)}, key=_order)
        dates = ", ".join(f"{f.path.name} written {f.record.get('written', '?')} on {f.record.get('host', '?')}"
                          for f in files[:6])
        raise MergeError(
            f"cannot merge: {len(conflicts)} pair(s) are held by more than one shard file with different values: "
            f"{_names(shown, 5)}. A shard that ran twice with the same result counts once; different values mean "
            f"the files come from different runs ({dates}), and the merge will not choose between them. Remove the "
            f"file(s) that should not count and merge again. Nothing was written.")


def _max_rel_diff(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        return float("inf")
    return float(np.max(np.abs(x - y) / (1.0 + np.abs(x)))) if x.size else 0.0


# --------------------------------------------------------------------------------------- reporting


def _unfinished_reason(plan: MergePlan, k: int) -> str:
    for f in plan.unfinished:
        if f.shard.count == plan.count and f.shard.index == k:
            mine = {key for p in plan.expected if plan.owner(p) == k for key in plan.keys_of[p]}
            have = len(mine & set(f.keys)) if mine else len(f.keys)
            return f"still capturing or stopped: {f.path.name} has {have} of {len(mine)} stimuli cached"
    return "no finished shard file"


def rerun_hint(plan: MergePlan) -> str:
    """How to run the missing shards again: status.sh's sbatch commands for a study, or the shards' own command."""
    record = plan.finished[0].record if plan.finished else {}
    argv = list((record.get("config") or {}).get("argv") or [])[1:]
    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--shard":
            skip = True
        elif not a.startswith("--shard="):
            keep.append(a)
    cmd = ("python -m probe " + shlex.join(keep).replace("{", "{{").replace("}", "}}") if keep else
           "the shards' `python -m probe run` command") + " --shard {K}/{count}"
    from render.status import STUDY_RERUN

    return STUDY_RERUN + "; or " + cmd + " for each K in {tasks}"


def print_plan(plan: MergePlan, file=None) -> int:
    """The --dry-run listing: pairs per shard, missing pairs with their shard, unfinished files; 0 or 3."""
    from render.status import INCOMPLETE, print_status, shard_status

    f = file or sys.stdout
    where = _names([str(p) for p in plan.folders], 4)
    if not plan.finished:
        for u in plan.unfinished:
            print(f"unfinished  {u.path}  (shard {u.shard}: still capturing or stopped, {len(u.keys)} stimuli cached)",
                  file=f)
        print(f"incomplete: no shard in {where} has finished yet ({len(plan.unfinished)} unfinished)", file=f)
        return INCOMPLETE
    st = shard_status("probe", where, plan.expected, lambda p: "" if p in plan.holder else
                      _unfinished_reason(plan, plan.owner(p)), plan.count)
    print(f"{len(plan.finished)} finished shard file(s): "
          f"{_names([f'{s.shard}' for s in plan.finished], 20)}; design: {len(plan.expected)} pairs "
          f"({plan.finished[0].record['design']['n_stimuli']} stimuli), one configuration "
          f"(key {plan.finished[0].configuration_key})", file=f)
    if plan.doubles:
        print(f"held twice with identical values (counted once): {_names(sorted(plan.doubles))}", file=f)
    code = print_status(st, resubmit=rerun_hint(plan).replace("{K}", "K"), file=f)
    if code == 0:
        print(f"ready: `python -m probe merge {where}` writes captures.npz, statistics and the report", file=f)
    return code


def merged_config(plan: MergePlan, argv: list[str]) -> dict:
    """config.json of the merged run: the first shard's run record, with every shard's own part in `shards`."""
    used = plan.used_files()
    config = dict(used[0].record["config"])
    config.pop("shard", None)
    infos = [f.record["config"].get("capture_info") or {} for f in used]
    info = dict(infos[0])
    for k in ("seconds", "stimuli", "unique_stimuli", "captured_now", "from_cache", "pipeline_calls",
              "prompts_captured_now", "prompts_from_cache"):
        if all(k in i for i in infos):
            info[k] = round(sum(i[k] for i in infos), 2) if k == "seconds" else sum(i[k] for i in infos)
    info["cache_started_fresh_because"] = [i["cache_started_fresh_because"] for i in infos
                                           if i.get("cache_started_fresh_because")] or None
    config["capture_info"] = info
    config["run_argv"] = config.get("argv")
    config.update(job="probe merge", argv=argv)
    config["shards"] = [{
        "file": str(f.path), "shard": f.record["shard"], "host": f.record.get("host"), "pid": f.record.get("pid"),
        "written": f.record.get("written"), "n_pairs": len(f.pair_ids),
        "device": (f.record["config"].get("model") or {}).get("device"),
        "capture_seconds": (f.record["config"].get("capture_info") or {}).get("seconds"),
        "pairs_used": sum(1 for g in plan.holder.values() if g is f),
    } for f in used]
    config["merge"] = {
        "folders": [str(p) for p in plan.folders], "configuration_key": used[0].configuration_key,
        "design_fingerprint": used[0].fingerprint, "n_pairs": len(plan.expected),
        "shard_files": len(plan.finished), "identical_duplicates": sorted(plan.doubles),
        "duplicate_tolerance": f"|x - y| <= {DUPLICATE_TOLERANCE} (1 + |x|)",
        "unused_files": [str(f.path) for f in plan.finished if f not in used],
    }
    return config


# ------------------------------------------------------------------------------------------------ job


def _out_folder(args, folders: list[Path]) -> Path:
    if args.out:
        return Path(args.out)
    roots = {(f.parent if f.name == "shards" else f).resolve() for f in folders}
    if len(roots) == 1:
        return next(iter(roots))
    raise MergeError(f"the shards are in {len(roots)} folders ({_names(sorted(map(str, roots)), 4)}): say where the "
                     f"merged run goes with --out DIR")


def main_merge(args) -> int:
    from probe.jobs.finish import load_baseline, check_out, finish_run

    folders = [Path(f) for f in args.folders]
    plan = plan_merge(folders)
    if args.dry_run:
        return print_plan(plan)
    if not plan.finished:
        raise MergeError(f"no shard in {_names([str(f) for f in folders])} has finished yet: "
                         f"{_names([u.label() for u in plan.unfinished], 5)} are still capturing or were stopped. "
                         f"Run them again with the same command (finished stimuli are skipped); `--dry-run` lists "
                         f"what is missing. Nothing was written.")
    if not plan.complete:
        missing = plan.missing
        shards = sorted({plan.owner(p) for p in missing})
        raise MergeError(
            f"cannot merge: {len(missing)} of {len(plan.expected)} pairs are in no finished shard file: "
            f"{_names([f'{p} (shard {plan.owner(p)}/{plan.count})' for p in missing])}. Shard(s) "
            f"{','.join(map(str, shards))} of {plan.count}: "
            f"{'; '.join(_unfinished_reason(plan, k) for k in shards[:5])}. Run them again (finished stimuli are "
            f"skipped): {rerun_hint(plan).format(K='K', count=plan.count, tasks=','.join(map(str, shards)))}; "
            f"`python -m probe merge ... --dry-run` lists them by shard. Nothing was written.")
    out = _out_folder(args, folders)
    change = plan.change()          # before anything is written: a missing vector is a MergeError
    baseline = load_baseline(args, out)
    check_out(out)
    config = merged_config(plan, list(sys.argv))
    used = plan.used_files()
    doubles = f"; {len(plan.doubles)} pair(s) held twice with identical values, counted once" if plan.doubles else ""
    print(f"merging {len(used)} shard file(s) ({', '.join(str(f.shard) for f in used)}): {len(plan.expected)} "
          f"pairs, one configuration{doubles}", file=sys.stderr)
    return finish_run(out, plan.design, plan.values(), list(used[0].units), config, args, baseline,
                      change=change)


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", metavar="DIR",
                   help="the --out folder(s) of the shards (their shards/partial-K-of-N.npz files; usually one "
                        "folder that all shards wrote into), or shard files themselves")
    p.add_argument("--out", default=None,
                   help="where the merged run goes (captures.npz, units.csv, summary.json, config.json, report.md); "
                        "default: the shards' folder when there is one")
    p.add_argument("--dry-run", "--status", dest="dry_run", action="store_true",
                   help="write nothing: check the shard files and list, per shard, the pairs still missing and the "
                        "shards to run again (exit 0 complete, 3 incomplete, 2 not mergeable)")

"""`python -m evaluate verdict`: the card's claims as hypotheses H1-H6, decided from outputs the tool already wrote.

    from evaluate.verdict import verdict_from_folders, write_verdict
    v = verdict_from_folders("runs/evaluate", probe_images="runs/probe-images",
                             population_images="runs/population-images")        # -> Verdict (frozen)
    v.outcome("H5").outcome          # 'supported' | 'not supported' | 'not tested'
    write_verdict(v, "runs/verdict")  # verdict.json, verdict.md, config.json

Inputs: an evaluate folder (score_summary.json; ablation.json and link.json when there; pred/klein/ for the model
that made the predictions), an image probe run and the population of untrained networks made with its design, a
text probe run and its population. The criteria are evaluate.verdict_criteria's (the only place they live); this
module reads, checks and applies them. A hypothesis whose input is missing, or whose test cannot reach its
criterion with the data given (a population or a set of random draws too small for rank p <= 0.05), is
`not tested`, with the command that would test it.

Refusals (VerdictError: one paragraph, exit 2, nothing written): no evaluate folder or no score_summary.json; a
probe run of the wrong kind (an image probe given as the text probe, or the reverse); a population of one; a run
of another design than its population (probe.stats.population.check_design); inputs made with different models
(each probe run, its population's base model and the evaluate folder's predictions must be one model).
"""
from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evaluate.verdict_criteria import (ALPHA, CRITERIA, H4_CLASSES, H4_RULE, H5_BASELINES, H5_METRICS, H6_METRIC,
                                       H6_SELECT, MIN_DRAWS,
                                       MIN_POPULATION, REQUIRED_CONTROLS, criteria_markdown, criterion)
from probe.io.errors import UsageError

__all__ = ["VerdictError", "Outcome", "Verdict", "verdict_from_folders", "write_verdict", "main_verdict",
           "VERDICT_FORMAT"]

VERDICT_FORMAT = "ray-plantain-verdict/1"
BASE_METHOD = "klein"            # the method evaluate generate writes and score pairs every baseline against
TEXT_NOT_TRAINED = ("{name} is a small klein trained here only to edit photographs (task: {task}), never on "
                    "text-to-image prompts, so the card's text contrast (photograph prompt vs albedo prompt) has no "
                    "known answer on it: H1-H3 are claims about a text-to-image model and are tested on klein itself")


class VerdictError(UsageError):
    """Inputs a verdict cannot be made from (message: one paragraph, user-facing)."""


@dataclass(frozen=True)
class Outcome:
    id: str
    claim: str
    test: str
    criterion: str
    outcome: str                          # supported | not supported | not tested
    reason: str                           # the numbers that decided it, or why it was not tested
    observed: dict = field(default_factory=dict)
    power: dict = field(default_factory=dict)
    to_test: str | None = None            # the command that would test it (not tested only)

    def as_dict(self) -> dict:
        return {"id": self.id, "claim": self.claim, "test": self.test, "criterion": self.criterion,
                "outcome": self.outcome, "reason": self.reason, "observed": self.observed, "power": self.power,
                "to_test": self.to_test}


@dataclass(frozen=True)
class Verdict:
    banner: str | None                    # the first line of verdict.md (None: the real model, no banner)
    model: dict                           # the model every input was made with (its record and identity)
    inputs: dict                          # the folders read
    outcomes: tuple                       # (Outcome, ...) in CRITERIA order
    notes: tuple = ()

    def outcome(self, hid: str) -> Outcome:
        return next(o for o in self.outcomes if o.id == hid)

    def as_dict(self) -> dict:
        return {"format": VERDICT_FORMAT, "banner": self.banner, "model": self.model, "inputs": self.inputs,
                "alpha": ALPHA, "criteria": [c.as_dict() for c in CRITERIA],
                "hypotheses": [o.as_dict() for o in self.outcomes], "notes": list(self.notes),
                "keys": {"criteria": "the pre-declared criteria (evaluate/verdict_criteria.py), the same for every "
                                     "model, printed before any outcome",
                         "hypotheses[].outcome": "supported | not supported | not tested",
                         "hypotheses[].observed": "the numbers the criterion was applied to",
                         "hypotheses[].power": "n, and the smallest attainable p (or the CI's resampling)",
                         "hypotheses[].to_test": "for not tested: the command that would test it"}}

    def markdown(self) -> str:
        lines = []
        if self.banner:
            lines += [f"**{self.banner}**", ""]
        lines += ["# Verdict: the card's claims as pre-declared hypotheses", "",
                  f"Model: {self.model.get('description', 'not recorded')}. Inputs: "
                  + "; ".join(f"{k} `{v}`" for k, v in self.inputs.items() if v) + ".", ""]
        lines += criteria_markdown()
        lines += ["", "## Outcomes", "", "| | hypothesis | outcome | power | decided by |", "|---|---|---|---|---|"]
        for o in self.outcomes:
            lines.append(f"| {o.id} | {o.claim} | **{o.outcome}** | {_power_words(o.power)} | "
                         f"{o.reason.replace('|', chr(92) + '|')} |")
        untested = [o for o in self.outcomes if o.outcome == "not tested" and o.to_test]
        if untested:
            lines += ["", "## What would test the untested ones", ""]
            lines += [f"- {o.id}: `{o.to_test}`" for o in untested]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- reading

def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise VerdictError(f"{path} is not valid JSON ({e}); it is {what}: make it again. Nothing was written.") \
            from None


def _read_evaluate(folder) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise VerdictError(f"evaluate folder not found: {folder}. A verdict reads an evaluate folder "
                           "(score_summary.json, "
                           "and ablation.json for H6), made by `python -m evaluate all --model MODEL --data RENDER_DIR "
                           f"--probe PROBE_RUN --out {folder}`. Nothing was written.")
    summary = _read_json(folder / "score_summary.json", "evaluate score's summary")
    if summary is None:
        raise VerdictError(f"{folder} holds no score_summary.json: it is not a scored evaluate folder. Score its "
                           f"predictions first (`python -m evaluate score --data RENDER_DIR --out {folder}`, or "
                           "`python -m evaluate all ...`). Nothing was written.")
    ev = {"path": folder, "summary": summary,
          "ablation": _read_json(folder / "ablation.json", "evaluate ablate's summary"),
          "link": _read_json(folder / "link.json", "evaluate link's summary"),
          "config": _read_json(folder / "config.json", "the evaluate job's configuration") or {},
          "score_config": _read_json(folder / "score_config.json", "evaluate score's configuration") or {}}
    pred = folder / "pred"                 # where evaluate writes them; else where score read them from
    if not pred.is_dir() and ev["score_config"].get("pred_dir"):
        pred = Path(ev["score_config"]["pred_dir"])
    ev["models"] = {}         # method -> (identity, model record) of every klein prediction folder
    for d in sorted(pred.glob(f"{BASE_METHOD}*")) if pred.is_dir() else []:
        if d.name != BASE_METHOD and not d.name.startswith(f"{BASE_METHOD}__"):
            continue
        cfg = _read_json(d / "config.json", "the predictions' generation keys") or {}
        man = _read_json(d / "manifest.json", "the predictions' manifest") or {}
        ident = cfg.get("model") or man.get("model")
        if cfg.get("uniform") is False:
            raise VerdictError(f"{d} holds predictions made with several generation keys (its config.json: uniform "
                               "false): they may come from different models, and a verdict mixes nothing. Regenerate "
                               "them with one model (`python -m evaluate generate --resume off`). Nothing was written.")
        if ident:
            ev["models"][d.name] = (ident, man.get("model_record") or {})
    scored = set((summary.get("methods") or {}).keys())
    if BASE_METHOD in scored and BASE_METHOD not in ev["models"]:
        raise VerdictError(f"{folder}'s score_summary.json scores {BASE_METHOD!r} predictions, but "
                           f"{pred / BASE_METHOD} "
                           "with its config.json or manifest.json (the model that made them) is not there: the verdict "
                           "cannot tell which model it is about, and a verdict mixes nothing. Keep the pred/ folder "
                           "beside score_summary.json. Nothing was written.")
    return ev


def _load_run(path, kind: str):
    from probe.io.runs import CompareError, load_run

    try:
        run = load_run(path)
    except CompareError as e:
        raise VerdictError(f"{e}. Nothing was written.") from None
    want = "images" if kind == "image" else "text"
    if run.stimuli != want:
        flag = "--probe-images" if kind == "image" else "--probe-text"
        raise VerdictError(f"{flag} {path} is a{'n image' if run.stimuli == 'images' else ' text'} probe run (stimuli "
                           f"{run.stimuli}), not a{'n image' if kind == 'image' else ' text'} probe: give each run to "
                           "its own flag (--probe-images: `probe run --stimuli images`; --probe-text: `probe run`). "
                           "Nothing was written.")
    return run


def _population(run, folder, flag: str):
    """(population_comparison section, Population) of `run` in `folder`; VerdictError for a population of one or
    a run of another design (the checks `probe compare --population` makes)."""
    from probe.io.runs import CompareError, load_population
    from probe.stats.population import population_comparison

    try:
        pop = load_population(folder)
        return population_comparison([run], pop), pop
    except CompareError as e:
        raise VerdictError(f"{flag} {folder}: {e}") from None


# ----------------------------------------------------------------------------------------------- the model

def _fingerprint_of_run(run) -> str | None:
    return ((run.config.get("capture_info") or {}).get("cache_fields") or {}).get("model_revision")


def _run_identity(run, base: bool = False) -> dict:
    m = run.config.get("model") or {}
    rnd = m.get("randomize") or {"mode": "none"}
    return {"model": m.get("model"), "source": m.get("source"), "fingerprint": _fingerprint_of_run(run),
            "components": m.get("components") or {},
            "tiny_seed": (m.get("spec") or {}).get("tiny_seed") if m.get("source") == "tiny" else None,
            "randomize": None if base else (rnd.get("mode", "none"), rnd.get("seed") if rnd.get("mode", "none")
                                            != "none" else None)}


def _pred_identity(ident: dict) -> dict:
    rnd = ident.get("randomize") or {"mode": "none"}
    return {"model": ident.get("model"), "source": ident.get("source"), "fingerprint": ident.get("fingerprint"),
            "tiny_seed": ident.get("tiny_seed") if ident.get("source") == "tiny" else None,
            "randomize": (rnd.get("mode", "none"), rnd.get("seed") if rnd.get("mode", "none") != "none" else None)}


def _same_model(a: dict, b: dict) -> bool:
    if a["randomize"] is not None and b["randomize"] is not None and a["randomize"] != b["randomize"]:
        return False
    fa, fb = a.get("fingerprint"), b.get("fingerprint")
    if fa and fb and str(fa).split(":")[0] == str(fb).split(":")[0]:
        return fa == fb            # the same kind of content hash (or snapshot commit): it decides
    if a.get("tiny_seed") != b.get("tiny_seed"):
        return False
    return (a.get("model"), a.get("source")) == (b.get("model"), b.get("source"))


def _same_untrained_base(run_ident: dict, pop_ident: dict) -> bool:
    """Is a population (its members' base identity) the run's model with its transformer re-initialised? By
    components when both record them (probe.klein.model.component_fingerprints): the same architecture and the
    same weights in every component the population did not re-initialise, so one population serves two snapshots
    that differ only in their transformer (known-albedo and known-photo share their VAE and text encoder);
    otherwise the same model (_same_model)."""
    a, b = run_ident.get("components") or {}, pop_ident.get("components") or {}
    if a and b:
        replaced = {"transformer"} | ({"text_encoder"} if (pop_ident.get("randomize_mode") == "all") else set())
        keys = (set(a) | set(b)) - replaced
        return all(a.get(k) == b.get(k) for k in keys)
    return _same_model(dict(run_ident, randomize=None), pop_ident)


def _describe_identity(i: dict) -> str:
    words = f"--model {i.get('model')} ({i.get('source')}"
    if i.get("fingerprint"):
        words += f", {i['fingerprint']}"
    if i.get("randomize") and i["randomize"][0] != "none":
        words += f", --randomize {i['randomize'][0]} seed {i['randomize'][1]}"
    return words + ")"


def _check_one_model(sources: list[tuple[str, dict]], populations: list[tuple[str, dict, str]]) -> None:
    """VerdictError unless every source (label, identity) is one model and every population (label, base identity,
    its run's label) is an untrained copy of it."""
    for label, ident in sources[1:]:
        if not _same_model(sources[0][1], ident):
            raise VerdictError(
                f"the inputs were made with different models: {sources[0][0]} with "
                f"{_describe_identity(sources[0][1])}, {label} with {_describe_identity(ident)}. A verdict states one "
                "model's claims from that model's own probe runs and predictions and mixes nothing: give the probe "
                "runs and the evaluate folder of one model (each records its model in config.json, the predictions "
                "in pred/klein/config.json). Nothing was written.")
    for label, ident, run_label in populations:
        run_ident = next((i for lab, i in sources if lab.startswith(run_label)), sources[0][1])
        if not _same_untrained_base(run_ident, ident):
            raise VerdictError(
                f"{label} is made of untrained copies of {_describe_identity(ident)}, but {run_label} was made with "
                f"{_describe_identity(sources[0][1])}: a population must be the run's own model with its transformer "
                "re-initialised (the text encoder and VAE stay the model's), `python -m probe run <the run's options> "
                "--randomize transformer --randomize-seeds 0-18 --out FOLDER`. Nothing was written.")


def _banner(record: dict) -> str | None:
    from probe.klein.known import report_banner

    rnd = (record.get("randomize") or {}).get("mode", "none")
    if rnd != "none":
        return (f"RANDOM WEIGHTS (not a finding): every input was made with a random-init network (--randomize {rnd}, "
                f"seed {(record.get('randomize') or {}).get('seed')}): this verdict checks the tool, not a model.")
    if record.get("random_weights"):
        return (f"RANDOM WEIGHTS (not a finding): every input was made with --model {record.get('model')} (random "
                "weights): a dry run of the verdict, not a finding.")
    known = report_banner(record)
    if known:
        return f"{(record.get('known_answer') or {}).get('name', record.get('model'))}: {known}."
    return None


# ----------------------------------------------------------------------------------------------- commands

def _rerun(run, out: str, extra: list[str] | None = None, drop: tuple = ()) -> str:
    """The run's own `probe run` command (its config.json argv) with --out OUT and `extra` options."""
    argv = list((run.config.get("argv") or [])[1:]) if run is not None else []
    if not argv or argv[0] != "run":
        argv = ["run"] + (argv if argv and argv[0].startswith("-") else [])
    skip = {"--out", "--randomize", "--randomize-seed", "--randomize-seeds", *drop}
    kept, i = [], 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in skip:
            i += 1 if "=" in a else 2
            continue
        kept.append(a)
        i += 1
    return "python -m probe " + shlex.join(kept + (extra or []) + ["--out", out])


def _model_flag(model: dict) -> str:
    return shlex.quote(str(model.get("model") or "MODEL"))


def _data_dir(ev: dict) -> str:
    return str((ev["config"].get("args") or {}).get("data") or ev["score_config"].get("data_dir") or "RENDER_DIR")


# ----------------------------------------------------------------------------------------------- hypotheses

def _outcome(hid: str, outcome: str, reason: str, observed=None, power=None, to_test=None) -> Outcome:
    c = criterion(hid)
    return Outcome(hid, c.claim, c.test, c.criterion, outcome, reason, observed or {}, power or {}, to_test)


def _null_floor(stats: dict) -> float | None:
    """The smallest p_fwer a tmax sign-flip null can give (probe.stats.null): 1/N enumerated, 1/(1 + P) drawn."""
    n_perm = stats.get("n_perm")
    if not n_perm:
        return None
    return 1.0 / n_perm if stats.get("null_exact") else 1.0 / (1 + n_perm)


def _float(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _power_words(p: dict) -> str:
    parts = []
    for k, v in p.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        elif isinstance(v, dict):
            v = ", ".join(f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}" for kk, vv in v.items())
        parts.append(f"{k} {v}")
    return "; ".join(parts) or "-"


def _h1(text, not_text: str | None, cmd: str) -> Outcome:
    if text is None:
        return _outcome("H1", "not tested", not_text or "no text probe run given (--probe-text)", to_test=cmd)
    import numpy as np

    s = text.summary
    n, floor = text.n_pairs, _null_floor(s)
    p_fwer = np.asarray(text.columns.get("p_fwer", []), dtype=np.float64)
    count = int(np.sum(p_fwer <= ALPHA + 1e-12)) if p_fwer.size else int(s.get("n_fwer_significant") or 0)
    power = {"n_pairs": n, "smallest_p_fwer": floor, "n_perm": s.get("n_perm"), "null_exact": s.get("null_exact")}
    obs = {"contrast": s.get("direction") or text.primary_contrast, "n_fwer_significant": count,
           "n_units": int(text.units.size), "max_abs_t": s.get("max_abs_t"), "fwer_abs_t_threshold":
           s.get("fwer_abs_t_threshold")}
    if floor is not None and floor > ALPHA:
        return _outcome("H1", "not tested", f"with {n} pairs and {s.get('n_perm')} sign vectors the smallest "
                        f"attainable p_fwer is {floor:.3g} > {ALPHA}: no unit could meet the criterion", obs, power,
                        _rerun(text, "runs/probe-text-more", ["--n-perm", "10000"]) + "  # with more pairs")
    ok = count >= 1
    return _outcome("H1", "supported" if ok else "not supported",
                    f"{count} of {text.units.size} units with p_fwer <= {ALPHA} (max |t| "
                    f"{float(s.get('max_abs_t') or 0):.3g}, FWER threshold |t| > "
                    f"{float(s.get('fwer_abs_t_threshold') or float('nan')):.3g})", obs, power)


def _rank(hid: str, comparison: dict, key: str, what: str) -> dict:
    row = next((r for r in comparison["runs"][0]["statistics"] if r["key"] == key), None)
    if row is None:
        return {"key": key, "observed": None, "rank_p": None, "why": f"the run has no {what}"}
    keep = ("key", "observed", "rank_p", "floor", "K", "n_at_least_as_extreme", "population_min",
            "population_median", "population_max", "why")
    return {k: row.get(k) for k in keep if k in row}


def _population_power(comparison: dict) -> dict:
    return {"K": comparison["K"], "floor": comparison["floor"]}


def _h2(text, comp, not_text: str | None, cmd_run: str, cmd_pop: str) -> Outcome:
    if text is None:
        return _outcome("H2", "not tested", not_text or "no text probe run given (--probe-text)",
                        to_test=cmd_run + " && " + cmd_pop)
    if comp is None:
        return _outcome("H2", "not tested", "no population of untrained networks given (--population-text)",
                        to_test=cmd_pop)
    r = _rank("H2", comp, f"{text.primary_contrast}/n_fwer_significant", "FWER count")
    power = _population_power(comp)
    if comp["floor"] > ALPHA:
        return _outcome("H2", "not tested", f"K = {comp['K']} untrained networks: the smallest attainable rank p is "
                        f"1/(1 + {comp['K']}) = {comp['floor']:.3g} > {ALPHA}, so the criterion cannot be met "
                        f"(needs K >= {MIN_POPULATION}; observed {r.get('observed')}, rank p {r.get('rank_p')})", r,
                        power, cmd_pop)
    if r.get("rank_p") is None:
        return _outcome("H2", "not tested", r.get("why") or "no rank p", r, power, cmd_pop)
    ok = r["rank_p"] <= ALPHA
    return _outcome("H2", "supported" if ok else "not supported",
                    f"{r['observed']:.0f} FWER-significant units vs the population's {r['population_min']:.0f}-"
                    f"{r['population_max']:.0f} (median {r['population_median']:.3g}): rank p {r['rank_p']:.3g}",
                    r, power)


def _h3(text, not_text: str | None, cmd: str) -> Outcome:
    if text is None:
        return _outcome("H3", "not tested", not_text or "no text probe run given (--probe-text)", to_test=cmd)
    s = text.summary
    controls = list(s.get("controls") or [])
    directs = s.get("directs") or {}
    missing = [c for c in REQUIRED_CONTROLS if c not in controls or f"vs_{c}" not in directs]
    power = {"n_pairs": text.n_pairs,
             "smallest_p_fwer": {c: _null_floor(directs.get(f"vs_{c}") or {}) for c in controls}}
    if missing:
        return _outcome("H3", "not tested", f"the run has no direct test against the {', '.join(missing)} "
                        f"control (its controls: {', '.join(controls) or 'none'})", {"controls": controls}, power,
                        _rerun(text, "runs/probe-text-controls", [a for c in REQUIRED_CONTROLS
                                                                   for a in ("--control", c)], drop=("--control",)))
    alpha_run = float(s.get("fwer_alpha", ALPHA))
    err = s.get("selective_beyond_control_error") or {}
    joint = s.get("n_selective_beyond_control_joint")
    power.update({"n_families": err.get("n_families"), "alpha_per_family": err.get("joint_alpha_per_family"),
                  "smallest_p_fwer": err.get("smallest_attainable_p_fwer") or power["smallest_p_fwer"]})
    obs = {"controls": controls, "n_selective_beyond_control_joint": joint,
           "n_selective_beyond_control": s.get("n_selective_beyond_control"),
           **{f"n_selective_vs_{c}": s.get(f"n_selective_vs_{c}") for c in controls}, "run_alpha": alpha_run}
    if abs(alpha_run - ALPHA) > 1e-12 or joint is None:
        why = (f"the run's selective counts were made at alpha {alpha_run}, the criterion's is {ALPHA}"
               if joint is not None else "the run's summary.json has no n_selective_beyond_control_joint (made "
               "before the joint test existed)")
        return _outcome("H3", "not tested", why, obs, power,
                        f"python -m probe stats {shlex.quote(str(text.path))} --alpha {ALPHA}")
    if err.get("joint_attainable") is False:
        floors = err.get("smallest_attainable_p_fwer") or {}
        return _outcome("H3", "not tested", f"the joint test needs p_fwer <= {ALPHA}/{err.get('n_families')} in "
                        f"every family, and the smallest attainable are {floors}: no unit could meet it", obs, power,
                        _rerun(text, "runs/probe-text-more", ["--n-perm", "100000"]) + "  # or more pairs")
    n = int(joint)
    per = ", ".join(f"{c} {s.get(f'n_selective_vs_{c}')}" for c in controls)
    return _outcome("H3", "supported" if n >= 1 else "not supported",
                    f"{n} units selective beyond every control set at family-wise {ALPHA} (each family at "
                    f"{ALPHA}/{err.get('n_families')}); at {ALPHA} per family {s.get('n_selective_beyond_control')}; "
                    f"beyond each: {per}", obs, power)


def _h4(image, comp, cmd_run: str, cmd_pop: str) -> Outcome:
    if image is None:
        return _outcome("H4", "not tested", "no image probe run given (--probe-images)",
                        to_test=cmd_run + " && " + cmd_pop)
    scalar = (image.summary.get("classes") or {}).get("counts") or {}
    classes = image.summary.get(H4_RULE) or {}
    counts = classes.get("counts") or {}
    power = {"n_pairs": image.n_pairs, "pairs_over": image.pairs_over}
    context = {"scalar_class_counts": {c: scalar.get(c) for c in H4_CLASSES},
               "scalar_class_note": "units.csv `class` (a head's RMS over its tokens): context, not the criterion"}
    if not all(c in counts for c in H4_CLASSES):
        return _outcome("H4", "not tested", "the image probe has no change classes (summary.json change_classes: it "
                        "needs change vectors, probe run --stimuli images with --change-dim > 0, the default, and its "
                        "lighting and albedo contrasts: a render folder with several lightings and --recolor "
                        "variants)", {"counts": counts, **context}, power, cmd_run)
    obs = {"rule": "change classes (probe/stats/change.py)", "counts": {c: counts[c] for c in H4_CLASSES},
           "margin": classes.get("margin"), "n_scenes": classes.get("n_scenes"), **context}
    power["per_unit_power"] = classes.get("power")
    if comp is None:
        return _outcome("H4", "not tested", "no population of untrained networks given (--population-images)", obs,
                        power, cmd_pop)
    power.update(_population_power(comp))
    ranks = {c: _rank("H4", comp, f"{H4_RULE}/{c}", f"{c} count") for c in H4_CLASSES}
    obs["ranks"] = ranks
    obs["scalar_class_ranks"] = {c: _rank("H4", comp, f"classes/{c}", f"scalar {c} count") for c in H4_CLASSES}
    if comp["floor"] > ALPHA:
        return _outcome("H4", "not tested", f"K = {comp['K']} untrained networks: the smallest attainable rank p is "
                        f"{comp['floor']:.3g} > {ALPHA}, so the criterion cannot be met (needs K >= "
                        f"{MIN_POPULATION})", obs, power, cmd_pop)
    if any(r.get("rank_p") is None for r in ranks.values()):
        return _outcome("H4", "not tested", "a class count has no rank p (a network of the population has none)", obs,
                        power, cmd_pop)
    ok = all(r["rank_p"] <= ALPHA for r in ranks.values())
    words = "; ".join(f"{c} {r['observed']:.0f} (population {r['population_min']:.0f}-"
                      f"{r['population_max']:.0f}), rank p "
                      f"{r['rank_p']:.3g}" for c, r in ranks.items())
    return _outcome("H4", "supported" if ok else "not supported", words, obs, power)


def _h5(ev: dict, cmd: str) -> Outcome:
    s = ev["summary"]
    paired = s.get("paired_differences") or {}
    if BASE_METHOD not in (s.get("methods") or {}) or not any(m in paired for m in H5_BASELINES):
        why = (f"score_summary.json has no {BASE_METHOD!r} predictions" if BASE_METHOD not in (s.get("methods") or {})
               else "score_summary.json has no paired differences against the baselines")
        return _outcome("H5", "not tested", why, to_test=cmd)
    cells, kinds, missing = {}, set(), []
    for b in H5_BASELINES:
        for m in H5_METRICS:
            e = (paired.get(b) or {}).get(m) or {}
            if e.get("mean") is None:
                missing.append(f"{m} vs {b}")
                continue
            stud = e.get("ci95_studentized_high") is not None
            kind = "studentized" if stud else "percentile"
            kinds.add(kind)
            lo, hi = ((e["ci95_studentized_low"], e["ci95_studentized_high"]) if stud else
                      (e.get("ci95_low"), e.get("ci95_high")))
            lo, hi = _float(lo), _float(hi)      # score_summary.json writes an unbounded CI as "-inf" / "inf"
            cells[f"{m} vs {b}"] = {"mean": e["mean"], "ci": [lo, hi], "ci_kind": kind, "n": e.get("n"),
                                    "n_clusters": e.get("n_clusters")}
    ns = [c["n"] for c in cells.values() if c["n"] is not None]
    power = {"n_samples": min(ns) if ns else None,
             "n_clusters": min((c["n_clusters"] for c in cells.values() if c["n_clusters"]), default=None),
             "n_boot": s.get("n_boot"), "ci": "/".join(sorted(kinds)) or None}
    if missing:
        return _outcome("H5", "not tested", f"no paired difference for {', '.join(missing)}", {"cells": cells}, power,
                        cmd)
    unbounded = [k for k, c in cells.items() if None in c["ci"] or not all(math.isfinite(x) for x in c["ci"])]
    if unbounded:
        return _outcome("H5", "not tested", f"the CI of {', '.join(unbounded)} is unbounded or missing (with "
                        f"{power['n_clusters']} base scenes the studentised interval cannot be bounded): score more "
                        "scenes", {"cells": cells, "ci_kind": "/".join(sorted(kinds))}, power,
                        "python -m render --out RENDER_DIR  # the 25 default scenes, then: " + cmd)
    ok = all(c["ci"][1] < 0 for c in cells.values())
    words = "; ".join(f"{k}: {c['mean']:+.3g} [{c['ci'][0]:+.3g}, {c['ci'][1]:+.3g}]" for k, c in cells.items())
    return _outcome("H5", "supported" if ok else "not supported",
                    f"{BASE_METHOD} minus baseline, 95 % {'/'.join(sorted(kinds))} CIs: {words}",
                    {"cells": cells, "ci_kind": "/".join(sorted(kinds))}, power)


def _h6(ev: dict, cmd: str) -> Outcome:
    ab = ev["ablation"]
    if not ab:
        return _outcome("H6", "not tested", "the evaluate folder has no ablation.json", to_test=cmd)
    if ab.get("skipped"):
        sel = {k: (e.get("selection") or {}) for k, e in (ab.get("by_k") or {}).items()}
        return _outcome("H6", "not tested", "; ".join(f"top-{k}: {w}" for k, w in ab["skipped"].items()),
                        {"skipped": ab["skipped"], "n_eligible": {k: s_.get("n_eligible") for k, s_ in sel.items()}},
                        {"n_random_draws": ab.get("n_random")},
                        cmd + "  # with a --k no larger than the number of selective heads")
    per_k, short, missing = {}, [], []
    for k, entry in sorted((ab.get("by_k") or {}).items(), key=lambda kv: int(kv[0])):
        e = (entry.get("metrics") or {}).get(H6_METRIC)
        if not e:
            missing.append(k)
            continue
        draws_k = [d for d in (e.get("random_draw_means") or []) if d is not None]
        top = e.get("top_harm_mean")
        per_k[k] = {"rank_p": e.get("rank_p_top_hurts_more"), "n_random_draws": e.get("n_random_draws"),
                    # context, not the criterion: the other tail (top-k hurts less than random k, e.g. helps)
                    "rank_p_top_hurts_less": ((1 + sum(d <= top for d in draws_k)) / (1 + len(draws_k))
                                              if draws_k and top is not None else None),
                    "floor": e.get("p_min_attainable"), "top_harm_mean": e.get("top_harm_mean"),
                    "random_harm_mean": e.get("random_harm_mean"), "n_samples": e.get("n_samples"),
                    "n_clusters": e.get("n_clusters"),
                    "selected_by": (entry.get("selection") or {}).get("contrast"),
                    "match": (entry.get("selection") or {}).get("match", "group"),
                    # different draws: guaranteed by plans that record n_distinct_possible; older ablations could
                    # repeat a draw, so their different draw means are counted
                    "n_different_draws": (e.get("n_random_draws") if "n_distinct_possible" in
                                          (entry.get("selection") or {}) else
                                          len({round(float(d), 12) for d in draws_k}))}
        if (per_k[k]["n_different_draws"] or 0) < MIN_DRAWS:
            short.append(k)
    draws = [v["n_random_draws"] for v in per_k.values()]
    power = {"n_random_draws": min(draws) if draws else ab.get("n_random"),
             "floor": max((v["floor"] for v in per_k.values() if v["floor"] is not None), default=None),
             "n_clusters": min((v["n_clusters"] for v in per_k.values() if v["n_clusters"]), default=None)}
    obs = {"by_k": per_k, "metric": H6_METRIC}
    if not per_k:
        return _outcome("H6", "not tested", f"ablation.json has no {H6_METRIC} effects"
                        + (f" (k = {', '.join(missing)})" if missing else ""), obs, power, cmd)
    if short:
        n_diff = min(per_k[k]["n_different_draws"] or 0 for k in short)
        return _outcome("H6", "not tested", f"k = {', '.join(short)}: {n_diff} different random draws give a smallest "
                        f"attainable rank p of {1 / (1 + n_diff):.3g} > {ALPHA} (needs >= {MIN_DRAWS} different "
                        "draws; a repeated draw is no new alternative)", obs, power, cmd)
    for k in per_k:
        sel = ((ab.get("by_k") or {}).get(k) or {}).get("selection") or {}
        per_k[k]["n_eligible"], per_k[k]["n_filled"] = sel.get("n_eligible"), sel.get("n_filled")
        # context, not the criterion: what the random draws came from, and whether their harm followed selectivity
        per_k[k]["random_pool"] = sel.get("random_pool")
        per_k[k]["harm_vs_n_eligible"] = ((ab.get("by_k") or {}).get(k) or {}).get("harm_vs_n_eligible")
    filled = {k: v for k, v in per_k.items() if v.get("n_filled")}
    if filled and all(v["selected_by"] == H6_SELECT for v in per_k.values()):
        ctx = "; ".join(f"top-{k}: {v['n_filled']} of {k} filled (rank p {v['rank_p']})" for k, v in filled.items())
        return _outcome("H6", "not tested", f"the probe has only {min(v['n_eligible'] or 0 for v in filled.values())} "
                        f"{H6_SELECT.replace('change_', '')}-selective heads (change classes), so the top-k were "
                        f"filled with heads that are not selective: there is no set of k selective heads to ablate "
                        f"(H4 says whether any exist); context: {ctx}", obs, power,
                        cmd + "  # with a --k no larger than the number of albedo-selective heads")
    other_rule = sorted({str(v["selected_by"]) for v in per_k.values() if v["selected_by"] != H6_SELECT})
    if other_rule:
        ctx = "; ".join(f"top-{k}: rank p {v['rank_p']}" for k, v in per_k.items())
        return _outcome("H6", "not tested", f"the ablated heads were chosen by {', '.join(other_rule)}, not by the "
                        f"criterion's rule ({H6_SELECT}: the change classes' albedo-selective heads); context, not "
                        f"the criterion: {ctx}", obs, power,
                        cmd + "  # add --match block for networks with few heads per block")
    ok = all(v["rank_p"] is not None and v["rank_p"] <= ALPHA for v in per_k.values())
    words = "; ".join(f"top-{k}: harm {v['top_harm_mean']:.3g} vs random {v['random_harm_mean']:.3g}, rank p "
                      f"{v['rank_p']:.3g}" for k, v in per_k.items())
    other = [k for k, v in per_k.items() if v["rank_p_top_hurts_less"] is not None
             and v["rank_p_top_hurts_less"] <= ALPHA]
    if other and not ok:
        words += (f" (context, not the criterion: at k = {', '.join(other)} the top-k heads hurt LESS than every or "
                  "nearly every random draw, rank p of the other tail <= 0.05: they are special, in the direction "
                  "opposite to the claim)")
    ctx = []
    for k, v in per_k.items():
        pool, hv = v.get("random_pool") or {}, v.get("harm_vs_n_eligible") or {}
        if pool.get("n_heads"):
            ctx.append(f"k = {k}: the draws came from {pool['n_heads']} heads, {pool['n_eligible']} of them selective "
                       "by the same rule (" + ", ".join(f"{r} {n}" for r, n in sorted(pool["by_region"].items()))
                       + " by token region)" + (f"; over the draws, harm against their selective-head count: "
                                                f"Spearman rho {hv['rho']:.2f} ({hv['n_draws']} draws)" if hv else ""))
    if ctx:
        words += " (context, not the criterion: " + "; ".join(ctx) + ")"
    return _outcome("H6", "supported" if ok else "not supported", words, obs, power)


# ----------------------------------------------------------------------------------------------- the verdict

def verdict_from_folders(evaluate, probe_images=None, population_images=None, probe_text=None,
                         population_text=None) -> Verdict:
    """Read the folders, check that they are about one model and that each population has its run's design,
    and decide H1-H6 (VerdictError on inputs a verdict cannot be made from; nothing is written here)."""
    ev = _read_evaluate(evaluate)
    for flag, pop, run in (("--population-images", population_images, probe_images),
                           ("--population-text", population_text, probe_text)):
        if pop and not run:
            raise VerdictError(f"{flag} {pop} was given without its run ({flag.replace('population', 'probe')}): a "
                               "population of untrained networks only ranks a run of the same design. Nothing was "
                               "written.")
    image = _load_run(probe_images, "image") if probe_images else None
    text = _load_run(probe_text, "text") if probe_text else None

    sources = [(f"the evaluate folder's {m} predictions ({ev['path']})", _pred_identity(i))
               for m, (i, _) in ev["models"].items()]
    sources += [(f"the {k} probe run ({r.path})", _run_identity(r)) for k, r in (("image", image), ("text", text))
                if r is not None]
    comps, pops = {}, []
    for kind, run, folder, flag in (("image", image, population_images, "--population-images"),
                                    ("text", text, population_text, "--population-text")):
        if run is not None and folder:
            comps[kind], pop = _population(run, folder, flag)
            base = _run_identity(pop.members[0], base=True)
            base["randomize_mode"] = ((pop.members[0].config.get("model") or {}).get("randomize") or {}).get("mode")
            pops.append((f"{flag} {folder}", base, f"the {kind} probe run"))
    if sources:
        _check_one_model(sources, pops)

    record = ((ev["models"].get(BASE_METHOD) or (None, None))[1]
              or next(((r.config.get("model") or {}) for r in (image, text) if r is not None), None)
              or (ev["models"].get(BASE_METHOD) or ({}, None))[0] or {})
    ident = sources[0][1] if sources else {}
    known = record.get("known_answer") if not record.get("random_weights") else None
    model = {"record": record, "identity": ident, "known_answer": known,
             "description": (_describe_identity(ident) if ident else "not recorded (no klein predictions, no probe "
                             "run)")}
    banner = _banner(record)

    m, data = _model_flag(record), _data_dir(ev)
    text_cmd = f"python -m probe run --model {m} --out runs/probe-text"
    grow = ["--randomize", "transformer", "--randomize-seeds", "0-18"]
    text_pop = (_rerun(text, str(population_text or "runs/population-text"), grow)
                if text is not None else f"{text_cmd.replace('runs/probe-text', 'runs/population-text')} --randomize "
                "transformer --randomize-seeds 0-18")
    img_cmd = f"python -m probe run --model {m} --stimuli images --data {data} --out runs/probe-images"
    img_pop = (_rerun(image, str(population_images or "runs/population-images"), grow)
               if image is not None else f"{img_cmd.replace('runs/probe-images', 'runs/population-images')} "
               "--randomize transformer --randomize-seeds 0-18")
    probe_for_ablation = shlex.quote(str(image.path)) if image is not None else "PROBE_RUN"
    gen_cmd = (f"python -m evaluate generate --model {m} --data {data} --out {shlex.quote(str(ev['path']))} ; "
               f"python -m evaluate score --data {data} --out {shlex.quote(str(ev['path']))}")
    ks = ",".join(str(k) for k in ((ev["ablation"] or {}).get("ks") or [8, 32]))
    abl_cmd = (f"python -m evaluate ablate --model {m} --data {data} --probe {probe_for_ablation} --k {ks} "
               f"--n-random {MIN_DRAWS} --select {H6_SELECT} --out {shlex.quote(str(ev['path']))}")

    not_text, notes = None, []
    if known and text is None:
        from probe.klein.model import DEFAULT_MODEL

        not_text = TEXT_NOT_TRAINED.format(name=known.get("name", record.get("model")), task=known.get("task", "?"))
        text_cmd = f"python -m probe run --model {DEFAULT_MODEL} --out runs/probe-text  # klein, not {m}"
        text_pop = (f"python -m probe run --model {DEFAULT_MODEL} --randomize transformer --randomize-seeds 0-18 "
                    "--out runs/population-text")
    elif known and text is not None:
        notes.append(TEXT_NOT_TRAINED.format(name=known.get("name"), task=known.get("task", "?"))
                     + ": the H1-H3 outcomes above say nothing about the tool's power")
    outcomes = (_h1(text, not_text, text_cmd), _h2(text, comps.get("text"), not_text, text_cmd, text_pop),
                _h3(text, not_text, text_cmd), _h4(image, comps.get("image"), img_cmd, img_pop),
                _h5(ev, gen_cmd), _h6(ev, abl_cmd))
    if sources and not any(i.get("fingerprint") for _, i in sources):
        notes.append("no input records a content fingerprint of the weights: the inputs were matched by model name "
                     "and source only")
    for kind, comp in comps.items():
        notes += [f"{kind} population: {n}" for n in comp.get("notes") or []]
        cal = comp.get("calibration") or {}
        if cal.get("rate_p_le_alpha_run_level") is not None:
            note = (f"{kind} population calibration (each untrained network against the other K - 1): rank p "
                    f"<= {cal.get('alpha')} at a rate of {cal['rate_p_le_alpha_run_level']:.3g} over run-level "
                    f"statistics (expected without ties {cal.get('expected_rate_without_ties'):.3g})")
            n_free = cal.get("n_statistics_tie_free") or 0
            if n_free:
                note += (f"; the leave-one-out rank p's of its {n_free} tie-free statistics are "
                         + ("uniform on {1/K, ..., 1}, as exchangeable networks give" if cal.get("uniform_on_grid")
                            else "NOT uniform on {1/K, ..., 1}: check the population"))
            elif cal.get("n_statistics"):
                note += "; none of its statistics is free of ties, so their ranks cannot be checked for uniformity"
            if cal.get("alpha_reachable") is False:
                note += (f"; with {cal.get('n_members')} networks each one's floor is 1 / {cal.get('n_members')} > "
                         f"{cal.get('alpha')}, so 0 is the only rate this population can show: the rate at "
                         f"{cal.get('alpha')} is measured with 20 networks in benchmarks/bench_population.py")
            notes.append(note)
    link = ev["link"]
    if link and isinstance(link.get("spearman"), dict):
        sp = link["spearman"]
        notes.append(f"context, not a criterion: link.json Spearman rho between selectivity and {link.get('metric')} "
                     f"= {sp.get('rho', float('nan')):.3g} (95 % CI {sp.get('ci_low', float('nan')):.3g} to "
                     f"{sp.get('ci_high', float('nan')):.3g}, {sp.get('n_clusters')} clusters; {link.get('kind')})")
    inputs = {"evaluate": str(ev["path"]), "probe_images": str(probe_images) if probe_images else None,
              "population_images": str(population_images) if population_images else None,
              "probe_text": str(probe_text) if probe_text else None,
              "population_text": str(population_text) if population_text else None}
    return Verdict(banner, model, inputs, outcomes, tuple(notes))


def write_verdict(verdict: Verdict, out, argv: list | None = None, args: dict | None = None) -> tuple[Path, Path]:
    """verdict.json, verdict.md and config.json (the resolved inputs and criteria) in `out`."""
    from evaluate.predictions import atomic_write_text
    from probe.io.jsonio import versions, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "verdict.json", verdict.as_dict())
    atomic_write_text(out / "verdict.md", verdict.markdown())
    write_json(out / "config.json", {"job": "evaluate verdict", "argv": list(argv if argv is not None else sys.argv),
                                     "args": args or {}, "inputs": verdict.inputs, "alpha": ALPHA,
                                     "criteria": [c.as_dict() for c in CRITERIA], "versions": versions()})
    return out / "verdict.json", out / "verdict.md"


def main_verdict(args) -> int:
    v = verdict_from_folders(args.evaluate, probe_images=args.probe_images, population_images=args.population_images,
                             probe_text=args.probe_text, population_text=args.population_text)
    out = Path(args.out) if args.out else Path(args.evaluate) / "verdict"
    write_verdict(v, out, args={k: val for k, val in vars(args).items()})
    print(v.markdown(), end="")
    print(f"wrote {out / 'verdict.json'}, {out / 'verdict.md'}", file=sys.stderr)
    return 0

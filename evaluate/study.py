"""The known-answer study (issue 16): does the whole chain say yes to a network that decomposes and no to the others?

    python -m render --resolution 64 --recolor 1 --out runs/render64        # the 25 default scenes: held out
    python -m evaluate study --data runs/render64 --out runs/known-study

Three networks of one architecture read from shipped snapshots (probe.klein.known), a fourth from a folder when given
(`--keeps-light`), and one population:

| network | `--model` | the known answer |
|---|---|---|
| decomposing | known-albedo | trained to edit the photograph into its albedo: H4-H6 must be supported |
| reproduce-photo | known-photo | trained as hard to give the photograph back: no decomposition, H4-H6 must not all be supported |
| untrained | known-albedo --randomize transformer --randomize-seed 1000 | random transformer: H4-H6 must not be supported |
| keeps-light (optional) | `--keeps-light FOLDER`: a `probe known train --task light` model | trained to give the shading averaged over the surface colours (keeps the light, drops the colour): H4 and H5 not supported, and its lighting-selective count beyond the population (the tool's power on H4's lighting half) |
| population | known-albedo --randomize transformer --randomize-seeds 0..K-1 | the K untrained networks every run is ranked among |

For each network the study runs, as a user would (one subprocess per job, every job's own resume):
`probe run --stimuli images` (the image probe), `evaluate all` (generate with baselines, score, ablate the probe's
top-k heads against random k-head draws, link, report; reproduce-photo is not ablated: H6 asks whether the heads
are needed for the albedo, which that network was never trained to give, so its H6 is "not tested"), `probe compare --population` and `evaluate verdict`; the
population once. It then writes study.md / study.json: one row per network with the evaluate numbers, the class
counts ranked among the population, the ablation's rank p, the link with its confound control, and the verdict's
H4-H6 outcomes against the answer each network must give (EXPECTED). The criteria are the verdict's
(evaluate.verdict_criteria), not the study's.

Resume: a step whose output exists is skipped only when it was made by the identical command on the same weights and
render (study_steps.json records each finished step's argv and the content hashes of the model folders and of the
render's manifest); a step with another command is an error naming the step (choose another --out or
delete the step's folder). An unfinished step is run again and its job resumes from what it cached.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from probe.io.errors import UsageError

__all__ = ["StudyConfig", "StudyError", "EXPECTED", "NETWORKS", "study_steps", "run_study", "study_table", "study_markdown",
           "main_study"]


class StudyError(UsageError):
    """Bad study input (one paragraph, exit 2)."""


# what each network must give; H1-H3 need text-to-image prompts the small networks never saw ("not tested")
EXPECTED = {
    "decomposing": {"H4": "supported", "H5": "supported", "H6": "supported"},
    "reproduce-photo": {"H4": "not supported", "H5": "not supported"},   # not ablated: its albedo is not the task
    "untrained": {"H4": "not supported", "H5": "not supported", "H6": "not supported"},
    # not shipped (the models' 10 MB budget): `probe known train --task light`, passed as --keeps-light FOLDER
    "keeps-light": {"H4": "not supported", "H5": "not supported"},   # lighting- but no albedo-selective heads
}
ANSWER = {"decomposing": "decomposes (trained to edit the photo into its albedo)",
          "reproduce-photo": "trained as hard, no decomposition (gives the photo back)",
          "untrained": "untrained (random transformer)",
          "keeps-light": "keeps the light, drops the colour (trained to give the shading averaged over its recolourings)"}
# The class a trained network's own answer puts beyond the population: its output drops one factor, so heads that
# drop it must exist. A check of the tool's power on each half of H4 (rank p <= ALPHA among the population). It is
# part of the known answer of keeps-light (whose H4 is "not supported" by design: one half only); for decomposing
# it is reported beside H4, which already needs it.
OWN_CLASS = {"decomposing": "albedo-selective", "keeps-light": "lighting-selective"}
OWN_CLASS_EXPECTED = ("keeps-light",)


NETWORKS_ALL = ("decomposing", "untrained", "reproduce-photo", "keeps-light")
DEFAULT_NETWORKS = ("decomposing", "untrained", "reproduce-photo")     # keeps-light: only with --keeps-light
# context beside the criteria, never a criterion: each contrast's FWER-significant count ranked among the population
CONTEXT_CONTRASTS = ("render_vs_albedo", "lighting", "albedo")


@dataclass(frozen=True)
class StudyConfig:
    data: str
    out: str
    decomposing: str = "known-albedo"
    reproduce_photo: str = "known-photo"
    population: int = 19            # K untrained networks (rank p floor 1 / (1 + K))
    untrained_seed: int = 1000      # the untrained network's --randomize-seed (outside the population's 0..K-1)
    steps: int = 10                 # inference steps of every sampling run (probe and evaluate alike)
    k: str = "4"                    # heads ablated (evaluate ablate --k)
    select: str = "change_albedo"   # which heads (evaluate ablate --select; the verdict's H6 reads this rule's)
    match: str = "block"            # random draws from the same block, either region: the small networks' 4-head
                                    # groups allow too few different region-matched draws
    n_random: int = 19              # random k-head draws (rank p floor 1 / (1 + draws))
    quiet: bool = False
    only: tuple[str, ...] = DEFAULT_NETWORKS  # run the steps of these networks (and the population) only
    keeps_light: str | None = None  # a `probe known train --task light` folder: the keeps-light network

    def networks(self) -> dict[str, list[str]]:
        return {"decomposing": ["--model", self.decomposing],
                "keeps-light": ["--model", str(self.keeps_light)],
                "reproduce-photo": ["--model", self.reproduce_photo],
                "untrained": ["--model", self.decomposing, "--randomize", "transformer",
                              "--randomize-seed", str(self.untrained_seed)]}


NETWORKS = tuple(EXPECTED)
# A network without a decomposition gives its answer on H6 also when H6 is `not tested` because it has fewer
# albedo-selective heads than k (no set of selective heads to ablate: nothing is claimed). Everywhere else the
# outcome must be the one written in EXPECTED.
NOT_TESTED_IS_NO_CLAIM = ("H6",)


def gives_answer(hid: str, outcome: str | None, want: str) -> bool:
    """Whether a hypothesis' outcome is the known answer `want` (see NOT_TESTED_IS_NO_CLAIM)."""
    return outcome == want or (want == "not supported" and hid in NOT_TESTED_IS_NO_CLAIM and outcome == "not tested")


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    done: str            # the file whose existence (with the recorded argv) marks the step finished

    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


def study_steps(cfg: StudyConfig) -> list[Step]:
    """Every job of the study, in order, as argv lists (python -m ...)."""
    out, py = Path(cfg.out), sys.executable
    common = ["--data", cfg.data, "--steps", str(cfg.steps)] + (["--quiet"] if cfg.quiet else [])
    pop = out / "population"
    steps = []
    nets = cfg.networks()

    def probe(net):
        return Step(f"{net}: image probe", (py, "-m", "probe", "run", "--stimuli", "images", *nets[net], *common,
                                            "--out", str(out / net / "probe-images")),
                    str(out / net / "probe-images" / "summary.json"))

    def rest(net):
        ev = out / net / "evaluate"
        return [Step(f"{net}: evaluate (generate, score, ablate, link, report)",
                     (py, "-m", "evaluate", "all", *nets[net], *common, "--probe", str(out / net / "probe-images"),
                      *(["--k", cfg.k, "--n-random", str(cfg.n_random), "--select", cfg.select, "--match", cfg.match]
                        if "H6" in EXPECTED[net] else ["--no-ablate"]),
                      "--out", str(ev)), str(ev / "report.md")),
                Step(f"{net}: rank among the population",
                     (py, "-m", "probe", "compare", str(out / net / "probe-images"), "--population", str(pop),
                      "--out", str(out / net / "compare")), str(out / net / "compare" / "compare.json")),
                Step(f"{net}: verdict",
                     (py, "-m", "evaluate", "verdict", "--evaluate", str(ev), "--probe-images",
                      str(out / net / "probe-images"), "--population-images", str(pop), "--out",
                      str(out / net / "verdict")), str(out / net / "verdict" / "verdict.json"))]

    # the decomposing network first (its answer is the one the tool must find), the population once
    want = set(cfg.only)
    steps += [probe(n) for n in ("decomposing", "untrained") if n in want]
    steps.append(Step(f"population of {cfg.population} untrained networks",
                      (py, "-m", "probe", "run", "--stimuli", "images", "--model", cfg.decomposing, "--randomize",
                       "transformer", "--randomize-seeds", f"0-{cfg.population - 1}", *common, "--out", str(pop)),
                      str(pop / "population.json")))
    for n in ("decomposing", "untrained"):
        steps += rest(n) if n in want else []
    for n in ("reproduce-photo", "keeps-light"):
        steps += [probe(n)] + rest(n) if n in want else []
    return steps


def _models(cfg: StudyConfig) -> list[str]:
    """The --model values the study's networks load (the untrained one and the population load the decomposing)."""
    return sorted({cfg.decomposing} | ({cfg.reproduce_photo} if "reproduce-photo" in cfg.only else set())
                  | ({str(cfg.keeps_light)} if "keeps-light" in cfg.only and cfg.keeps_light else set()))


def _model_folder(model: str) -> Path:
    from probe.klein.known import KNOWN_MODELS, known_model_dir

    return known_model_dir(model) if model in KNOWN_MODELS else Path(model)


def _held_out(cfg: StudyConfig) -> dict:
    """The render's base scenes and whether any was in a network's training data (refused)."""
    man_path = Path(cfg.data) / "manifest.json"
    try:
        man = json.loads(man_path.read_text())
    except (OSError, ValueError) as e:
        raise StudyError(f"--data {cfg.data}: no readable render manifest ({e}). Render the held-out test set "
                         "first: `python -m render --resolution 64 --recolor 1 --out runs/render64` (the 25 default "
                         "scenes). Nothing was written.") from None
    scenes = sorted({s.get("base_scene") or s.get("scene_id") or s["id"] for s in man.get("samples", [])})
    trained: set[str] = set()
    for model in _models(cfg):
        folder = _model_folder(model)
        try:
            rec = json.loads((folder / "ray_plantain_known.json").read_text())
        except (OSError, ValueError):
            raise StudyError(f"--model {model}: {folder} has no known-answer record (ray_plantain_known.json): the "
                             "study runs on networks whose answer is known (`python -m probe known list`). Nothing "
                             "was written.") from None
        m = re.match(r"gen_s(\d+)_(\d+) \.\. gen_s\1_(\d+)", str(rec.get("data_recipe", {}).get("generator_scenes")))
        if m:
            trained |= {f"gen_s{m.group(1)}_{i:04d}" for i in range(int(m.group(2)), int(m.group(3)) + 1)}
    overlap = sorted(set(scenes) & trained)
    if overlap:
        raise StudyError(f"--data {cfg.data} holds {len(overlap)} base scenes the known-answer models were trained on "
                         f"({', '.join(overlap[:4])}{' ...' if len(overlap) > 4 else ''}): the study scores held-out "
                         "scenes only. Render the 25 default scenes: `python -m render --resolution 64 --recolor 1 "
                         "--out runs/render64`. Nothing was written.")
    return {"n_base_scenes": len(scenes), "n_samples": len(man.get("samples", [])), "trained_on_overlap": 0}


def _input_fingerprints(cfg: StudyConfig) -> dict:
    """Content hashes of what every step depends on besides its command: each model folder (probe.klein.model
    folder_fingerprint) and the render's manifest."""
    import hashlib

    from probe.klein.model import folder_fingerprint

    fps = {m: folder_fingerprint(_model_folder(m)) for m in _models(cfg)}
    fps["render_manifest"] = "sha256:" + hashlib.sha256((Path(cfg.data) / "manifest.json").read_bytes()).hexdigest()[:20]
    return fps


def run_study(cfg: StudyConfig, log=print) -> dict:
    """Run (or resume) every step, then write study.json / study.md; returns the table."""
    unknown = sorted(set(cfg.only) - set(NETWORKS_ALL))
    if unknown or not cfg.only:
        raise StudyError(f"--networks {','.join(cfg.only)}: choose among {', '.join(NETWORKS_ALL)}. Nothing was "
                         "written.")
    if "keeps-light" in cfg.only and not cfg.keeps_light:
        raise StudyError("--networks keeps-light needs --keeps-light FOLDER: a model trained to give the shading "
                         "(`python -m probe known train --data DIR --task light --vae-from known-albedo --out "
                         "FOLDER`; not shipped). Nothing was written.")
    if cfg.population < 2:
        raise StudyError(f"--population {cfg.population}: a population of one cannot rank anything (rank p = (1 + "
                         f"#{{>=}}) / (1 + K)); use 19 for a floor of 0.05. Nothing was written.")
    held = _held_out(cfg)
    out = Path(cfg.out)
    steps = study_steps(cfg)
    record_path = out / "study_steps.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    fingerprints = _input_fingerprints(cfg)

    def deps(st):          # what a step rests on: the render, the population's weights and its own network's
        keys = {"render_manifest", cfg.decomposing} | {a for a in st.argv if a in fingerprints}
        net = st.name.split(":")[0]
        if net in cfg.networks() and net in cfg.only:
            keys.add(cfg.networks()[net][1])
        return {k: v for k, v in fingerprints.items() if k in keys}

    def same_inputs(prev, st):   # records made before keeps-light hold every model's hash: compare this step's
        now = deps(st)
        return {k: (prev.get("inputs") or {}).get(k) for k in now} == now

    def same(prev, st):    # the same command on the same weights and the same render
        return prev["argv"][1:] == list(st.argv[1:]) and same_inputs(prev, st)

    for st in steps:       # refuse before running anything if a finished step was made by another command
        prev = record.get(st.name)
        if prev is not None and prev["argv"][1:] != list(st.argv[1:]) and Path(st.done).exists():
            raise StudyError(f"{out}: the step '{st.name}' was finished with another command ({' '.join(prev['argv'][1:])}"
                             f"), not this one ({st.command()}). A result is reused only when everything that made it "
                             "is identical: choose another --out or delete that step's folder. Nothing was written.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "study_config.json").write_text(json.dumps({"config": asdict(cfg), "argv": sys.argv, "held_out": held,
                                                       "expected": EXPECTED}, indent=1))
    t_all = time.perf_counter()
    for i, st in enumerate(steps, 1):
        prev = record.get(st.name)
        if prev is not None and same(prev, st) and Path(st.done).exists():
            log(f"[{i}/{len(steps)}] {st.name}: done before (same command, weights and render), skipped")
            continue
        if prev is not None and not same_inputs(prev, st):
            log(f"[{i}/{len(steps)}] {st.name}: the weights or the render changed since it ran: run again (the job "
                "itself decides what of its cache still holds)")
        log(f"[{i}/{len(steps)}] {st.name} ...\n    $ {st.command()}")
        t0 = time.perf_counter()
        r = subprocess.run(list(st.argv))
        if r.returncode != 0:
            raise RuntimeError(f"the step '{st.name}' failed (exit {r.returncode}): {st.command()}")
        record[st.name] = {"argv": list(st.argv), "seconds": round(time.perf_counter() - t0, 1), "inputs": deps(st)}
        record_path.write_text(json.dumps(record, indent=1))
        log(f"    {st.name}: {time.perf_counter() - t0:.0f} s (study so far {(time.perf_counter() - t_all) / 60:.1f} min)")
    table = study_table(cfg)
    table["seconds"] = {k: v["seconds"] for k, v in record.items()}
    table["held_out"] = held
    (out / "study.json").write_text(json.dumps(table, indent=1, default=str))
    (out / "study.md").write_text(study_markdown(table))
    log(study_markdown(table))
    return table


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def study_table(cfg: StudyConfig) -> dict:
    """One row per network from the files its steps wrote (verdict.json, score_summary.json, link.json)."""
    out, rows = Path(cfg.out), {}
    for net in NETWORKS:
        if net not in cfg.only:
            continue
        v = _load(out / net / "verdict" / "verdict.json")
        outcomes = {o["id"]: o for o in v.get("hypotheses", [])}
        ev = _load(out / net / "evaluate" / "score_summary.json")
        link = _load(out / net / "evaluate" / "link.json")
        h4 = (outcomes.get("H4") or {}).get("observed") or {}
        h5 = (outcomes.get("H5") or {}).get("observed") or {}
        h6 = (outcomes.get("H6") or {}).get("observed") or {}
        klein = ((ev.get("methods") or {}).get("klein") or {}).get("metrics_common") or {}
        ps = link.get("partial_spearman") or {}
        row = {
            "answer": ANSWER[net],
            "lmse_linear_scalar": (klein.get("lmse_linear_scalar") or {}).get("mean"),
            "h5_cells": h5.get("cells"), "h4_ranks": h4.get("ranks"), "h6_by_k": h6.get("by_k"),
            "link_partial": {k: ps.get(k) for k in ("available", "control", "n", "rho", "p", "ci_low", "ci_high",
                                                     "rho_plain")} if ps else None,
            "outcomes": {h: (outcomes.get(h) or {}).get("outcome") for h in ("H1", "H2", "H3", "H4", "H5", "H6")},
        }
        row["scalar_class_ranks"] = h4.get("scalar_class_ranks")
        cc = _load(out / net / "probe-images" / "summary.json").get("change_classes") or {}
        outs = list((cc.get("output") or {}).values())
        row["output_ratio"] = (sum(o["ratio_lighting_to_albedo"] for o in outs) / len(outs)) if outs else None
        row["input_ratio"] = cc.get("input_ratio_lighting_to_albedo")
        comp = _load(out / net / "compare" / "compare.json")
        stats = {st_["key"]: st_ for r in ((comp.get("population") or {}).get("runs") or [])
                 for st_ in r.get("statistics") or []}
        row["context_fwer_ranks"] = {c: {k: stats[f"{c}/n_fwer_significant"].get(k) for k in
                                         ("observed", "population_max", "population_median", "rank_p")}
                                     for c in CONTEXT_CONTRASTS if f"{c}/n_fwer_significant" in stats}
        row["expected"] = EXPECTED[net]
        row["as_expected"] = all(gives_answer(h, row["outcomes"].get(h), want) for h, want in EXPECTED[net].items())
        if net in OWN_CLASS:
            from evaluate.verdict_criteria import ALPHA

            e = (row["h4_ranks"] or {}).get(OWN_CLASS[net]) or {}
            beyond = e.get("rank_p") is not None and e["rank_p"] <= ALPHA
            # context: whether the network's own answer (output.img, the same rule as a unit) shows its class here
            out_cls = [o.get("class_if_it_were_a_unit") for o in outs]
            row["own_class"] = {"class": OWN_CLASS[net], "observed": e.get("observed"),
                                "population_max": e.get("population_max"), "rank_p": e.get("rank_p"),
                                "beyond_population": beyond, "part_of_known_answer": net in OWN_CLASS_EXPECTED,
                                "output_steps": len(out_cls),
                                "output_steps_of_the_class": sum(c == OWN_CLASS[net] for c in out_cls)}
            if net in OWN_CLASS_EXPECTED:
                row["as_expected"] = row["as_expected"] and beyond
        rows[net] = row
    margins = {}
    dec = ((rows.get("decomposing") or {}).get("h4_ranks") or {})
    for cls, r in dec.items():
        photo = (((rows.get("reproduce-photo") or {}).get("h4_ranks") or {}).get(cls) or {}).get("observed")
        margins[cls] = {"decomposing": r.get("observed"), "population_max": r.get("population_max"),
                        "minus_population_max": (r["observed"] - r["population_max"])
                        if r.get("observed") is not None and r.get("population_max") is not None else None,
                        "reproduce_photo": photo,
                        "minus_reproduce_photo": (r["observed"] - photo) if photo is not None and
                        r.get("observed") is not None else None}
    models = {}
    for net in rows:
        argv = cfg.networks()[net]
        try:
            task = json.loads((_model_folder(argv[1]) / "ray_plantain_known.json").read_text()).get("task")
        except (OSError, ValueError):
            task = None
        models[net] = {"model": argv[1], "task": task,
                       "randomize_seed": int(argv[argv.index("--randomize-seed") + 1])
                       if "--randomize-seed" in argv else None}
    return {"what": "the known-answer study (issue 16): verdict H4-H6 on networks whose answer is known",
            "banner": "networks trained here on synthetic renders: a check of the tool, not a finding about klein",
            "config": asdict(cfg), "rows": rows, "margins": margins, "models": models,
            "all_as_expected": all(r["as_expected"] for r in rows.values()),
            "networks_run": list(cfg.only)}


def _f(x, fmt="{:.3g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def study_markdown(t: dict) -> str:
    c = t["config"]
    lines = [f"**{t['banner']}.**", "", "# The known-answer study", "",
             f"Held-out render: `{c['data']}`; every sampling run at {c['steps']} steps; population of "
             f"{c['population']} untrained networks (rank p floor {1 / (1 + c['population']):.3g}); ablation "
             f"k = {c['k']} against {c['n_random']} random draws. Criteria: `evaluate/verdict_criteria.py` (printed in "
             "each verdict.md).", "",
             "Models: " + "; ".join(
                 f"{net} `{m['model']}`" + (f" (task {m['task']})" if m.get("task") else "")
                 + (f" with its transformer randomised (seed {m['randomize_seed']})" if m.get("randomize_seed")
                    is not None else "") for net, m in (t.get("models") or {}).items())
             + "; the population: the decomposing network's, its transformer randomised.", "",
             "| network | answer | LMSE (linear, scalar) | vs image_as_albedo | vs retinex_color | lighting-sel. (pop. max, "
             "rank p) | albedo-sel. (pop. max, rank p) | ablation rank p | link partial ρ | H4 | H5 | H6 | as expected |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for net, r in t["rows"].items():
        cells = r.get("h5_cells") or {}

        def diff(b):
            e = cells.get(f"lmse_linear_scalar vs {b}")
            return "n/a" if not e else f"{e['mean']:+.4f} [{_f(e['ci'][0], '{:+.4f}')}, {_f(e['ci'][1], '{:+.4f}')}]"

        ranks = r.get("h4_ranks") or {}

        def cls(name):
            e = ranks.get(name)
            return "n/a" if not e else f"{e['observed']:.0f} ({e['population_max']:.0f}, {e['rank_p']:.3g})"

        ab = r.get("h6_by_k") or {}
        abl = "; ".join(f"k={k}: {_f(v.get('rank_p'))}" for k, v in ab.items()) or "n/a"
        lp = r.get("link_partial") or {}
        link = (f"{_f(lp.get('rho'))} [{_f(lp.get('ci_low'))}, {_f(lp.get('ci_high'))}]"
                if lp.get("available") else "n/a")
        o = r["outcomes"]
        lines.append(f"| {net} | {r['answer']} | {_f(r.get('lmse_linear_scalar'), '{:.4f}')} | {diff('image_as_albedo')} "
                     f"| {diff('retinex_color')} | {cls('lighting-selective')} | {cls('albedo-selective')} | {abl} | "
                     f"{link} | {o.get('H4')} | {o.get('H5')} | {o.get('H6')} | "
                     f"{'yes' if r['as_expected'] else 'NO'} |")
    lines += ["", "Class counts are the change classes (`class_change`, probe/stats/change.py), H4's. Context, not a "
              "criterion: the scalar classes (`class`, a head's RMS over its tokens) ranked the same way, and the "
              "network's own output (`output.img`): its gain for light over its gain for colour, mean over the "
              "captured steps (1: light and colour move the answer alike per unit of input change; 0: the answer "
              "ignores the light).", "",
              "| network | scalar lighting-sel. (pop. max, rank p) | scalar albedo-sel. (pop. max, rank p) | output "
              "gain ratio light / colour | input ratio light / colour |", "|---|---|---|---|---|"]
    for net, r in t["rows"].items():
        sr = r.get("scalar_class_ranks") or {}

        def scl(name):
            e = sr.get(name) or {}
            return "n/a" if e.get("observed") is None else (f"{e['observed']:.0f} ({_f(e.get('population_max'), '{:.0f}')}, "
                                                            f"{_f(e.get('rank_p'))})")

        lines.append(f"| {net} | {scl('lighting-selective')} | {scl('albedo-selective')} | "
                     f"{_f(r.get('output_ratio'), '{:.3f}')} | {_f(r.get('input_ratio'), '{:.3f}')} |")
    lines += ["", "Context, not a criterion (the verdict does not read it): each contrast's FWER-significant unit count, "
              "the population's median and maximum, and its rank p among the untrained networks.", "",
              "| network | " + " | ".join(CONTEXT_CONTRASTS) + " |", "|---|" + "---|" * len(CONTEXT_CONTRASTS)]
    for net, r in t["rows"].items():
        cx = r.get("context_fwer_ranks") or {}
        lines.append(f"| {net} | " + " | ".join(
            "n/a" if c not in cx else f"{cx[c]['observed']:.0f} (median {cx[c]['population_median']:.0f}, max "
            f"{cx[c]['population_max']:.0f}; rank p {cx[c]['rank_p']:.3g})" for c in CONTEXT_CONTRASTS) + " |")
    wants = [f"{n}: " + ", ".join([f"{h} {w}" for h, w in e.items()]
                                  + ([f"its {OWN_CLASS[n]} count beyond the population (rank p <= 0.05)"]
                                     if n in OWN_CLASS_EXPECTED else []))
             for n, e in EXPECTED.items() if n in t["rows"]]
    lines += ["", "Expected: " + "; ".join(wants) + " (H6 `not tested` for lack of selective "
              "heads also counts as no claim on the networks without a decomposition; H1-H3: not tested on these networks, "
              "which were never trained on text-to-image prompts).", ""]
    for cls_, m in (t.get("margins") or {}).items():
        lines.append(f"- margin, {cls_}: decomposing {_f(m['decomposing'], '{:.0f}')} units, population max "
                     f"{_f(m['population_max'], '{:.0f}')} (margin {_f(m['minus_population_max'], '{:+.0f}')}), "
                     f"reproduce-photo {_f(m['reproduce_photo'], '{:.0f}')} (margin "
                     f"{_f(m['minus_reproduce_photo'], '{:+.0f}')})")
    for net, r in t["rows"].items():
        oc = r.get("own_class")
        if oc:
            lines.append(f"- power check, {net}: {oc['class']} {_f(oc['observed'], '{:.0f}')} units (population max "
                         f"{_f(oc['population_max'], '{:.0f}')}, rank p {_f(oc['rank_p'])}): "
                         f"{'beyond' if oc['beyond_population'] else 'NOT beyond'} the population"
                         + ("" if oc["part_of_known_answer"] else " (reported; H4 above already needs it)")
                         + (f"; its own answer (output.img, the same rule) is {oc['class']} at "
                            f"{oc['output_steps_of_the_class']} of {oc['output_steps']} captured steps"
                            if oc.get("output_steps") else ""))
    lines += ["", f"**Every network gave its known answer: {'yes' if t['all_as_expected'] else 'NO'}.**", ""]
    return "\n".join(lines)


def main_study(args) -> int:
    cfg = StudyConfig(data=args.data, out=args.out, decomposing=args.decomposing,
                      reproduce_photo=args.reproduce_photo, population=args.population,
                      untrained_seed=args.untrained_seed, steps=args.steps, k=args.k, n_random=args.n_random,
                      select=args.select, match=args.match,
                      quiet=args.quiet, keeps_light=args.keeps_light,
                      only=(tuple(x.strip() for x in args.networks.split(",") if x.strip()) if args.networks else
                            DEFAULT_NETWORKS + (("keeps-light",) if args.keeps_light else ())))
    if cfg.steps < 1 or cfg.n_random < 1:
        raise StudyError("--steps and --n-random must be positive. Nothing was written.")
    run_study(cfg)
    return 0

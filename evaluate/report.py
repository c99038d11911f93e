"""report.md and report.html from whatever an evaluation folder holds (no torch, no GPU).

    from evaluate.report import write_report
    write_report(Path("runs/evaluate"), data=Path("runs/render"), probe=Path("runs/probe"))

Reads OUT/pred/<method>/ (predictions and their manifest/config), scores.csv, score_summary.json,
invariance.csv, score_config.json, link.json, ablation.json, ablation_plan.json and config.json;
each missing input turns its section into a one-line note naming the command that makes it.
Writes OUT/figures/grid_*.png and figures/ablation.png (matplotlib, Agg), OUT/report.md (images
linked relatively, so the folder can be moved) and OUT/report.html (one self-contained file:
images embedded as base64).

Honest labelling: when any prediction manifest or sidecar, the probe's summary.json, link.json
or the job config records random weights (`--model tiny`), the report's first line says so and
that nothing in it is a finding. Ablation runs (`klein__ablate_*`) appear only in the ablation
section, the configs and the error list, never in the grids or the main metric table.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["write_report", "ReportInputs", "collect_inputs", "random_weight_sources", "spread_samples",
           "KEY_METRICS", "BASE_METHOD", "is_ablation"]

BASE_METHOD = "klein"
BASELINE_ORDER = ("image_as_albedo", "retinex_color", "marigold_intrinsics")
# The headline: every metric under `scalar` alignment (one least-squares scale, fitted in linear
# space; sRGB columns encode the aligned prediction), so methods with an arbitrary albedo scale are
# compared fairly; `none` and `per_channel` go to the detail tables.
KEY_METRICS = ("lmse_linear_scalar", "mse_linear_scalar", "mse_srgb_scalar", "dssim_srgb_scalar",
               "psnr_srgb_scalar", "lpips_srgb_scalar", "shading_leakage_abs_linear", "shading_leakage_linear")
HEADLINE_INVARIANCE = "inv_nmse_linear_scalar"
DEFINITION_CHANGES = (
    "Headline table: every metric under `scalar` alignment (before: LMSE per-channel and sRGB metrics without "
    "alignment); `none` and `per_channel` are in the detail tables. The default metric of the link and the causal "
    "test is `lmse_linear_scalar` (before: `lmse_linear_per_channel`).",
    "Confidence intervals resample base scenes (a scene's lightings and colour variants together), everywhere; "
    "before, samples were resampled as if independent.",
    "Illumination invariance: `inv_nmse_linear_*` is scale-free (normalised by the predictions' energy) and leaves "
    "out degenerate (zero or constant) predictions; the earlier `inv_mse_linear_*` scaled with the predictions "
    "(c^2) and ranked dark or constant outputs best. It is shown beside accuracy, never alone.",
    "DSSIM and LPIPS maps are averaged over the mask eroded by the window radius (before: the whole mask, where "
    "zero-filled windows at the edge look alike).",
    "Every method gets the same input, the 8-bit `image_srgb.png` decoded to linear (before, the baselines read the "
    "HDR EXR); HDR-input baselines are separate methods (`*_hdr`).",
    "klein's reference is padded to multiples of 16 and its output cropped back, pixel-exactly when the render fits "
    "the model's maximum side (--max-side); a larger render is area-downscaled first and klein's output upsampled "
    "back, which loses resolution: scores.csv says so per sample (`reference_scale_mode`, `reference_exact`) and the "
    "metrics section counts them (before, the pipeline cropped references and scoring stretched the output back).",
    "Ablation replaces a head's output by its mean over exactly the token region the probe measured (before: the "
    "whole stream, reference tokens and text padding included); heads are chosen among FWER-significant units that "
    "pass the probe's control test and, for image probes, its class; the random-k interval comes from the spread "
    "between draws; the p is a rank p and its smallest attainable value is stated.",
    "New: shading leakage (slope of log(pred/gt) on log(shading)), and paired differences klein minus each baseline.",
    "Shading leakage is signed (`shading_leakage_linear`: > 0 carries the lighting, < 0 inverts it); its magnitude "
    "`shading_leakage_abs_linear` is what the headline ranks and averages and what the ablation calls harm (before, "
    "the signed slope was ranked 'lower is better', so an over-corrected prediction at -1 ranked best and +0.5 and "
    "-0.5 averaged to 0). A black prediction pixel enters the fit at the 8-bit floor (3.04e-4 linear) instead of being "
    "left out (before, the pixels where lighting leaked most dropped out of the fit).",
    "The headline table is over the samples every method scored (before, each method's mean was over its own ok "
    "samples), with n samples and scenes per row, non-finite counts per cell, and PSNR's inf (a perfect prediction) "
    "counted as 100 dB and said so (before, left out).",
    "CIs: studentised (bootstrap-t) cluster bootstrap, which holds its level with few scenes (the percentile interval "
    "covered 83 % instead of 95 % at 5 scenes in a simulation, the studentised 94 %); every CI states its number of scenes.",
    "Scenes are counted as base scenes (the clusters every CI resamples); colour variants are named as such.",
    "Random-k ablation draws never contain a top-k head (before, a block group with too few other heads drew from all "
    "of its heads); a group that cannot supply k other heads is refused.",
    "Degenerate predictions include near-constant ones (relative spread under a tenth of the ground truth's), not only "
    "exactly constant ones.",
)
GRID_ROWS_PER_FIGURE = 6      # more rows per PNG make the images too small to read
MAX_ERROR_ROWS = 200
MAX_JSON_CHARS = 20_000
DASH = "—"


def is_ablation(method: str) -> bool:
    return "__ablate_" in method


# ---------------------------------------------------------------------------------------------
# inputs


def _read_json(path: Path) -> dict | None:
    """The parsed file, None when absent; an unparsable file is reported, not fatal."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"_unreadable": f"{type(e).__name__}: {e}"}
    return obj if isinstance(obj, dict) else {"_value": obj}


def _read_csv(path: Path) -> list[dict] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class ReportInputs:
    out: Path
    data: Path | None
    pred: Path
    probe: Path | None
    manifests: dict[str, dict] = field(default_factory=dict)      # method -> PRED/<method>/manifest.json
    method_configs: dict[str, dict] = field(default_factory=dict)  # method -> PRED/<method>/config.json
    summary: dict | None = None
    scores: list[dict] | None = None
    invariance: list[dict] | None = None
    score_config: dict | None = None
    link: dict | None = None
    ablation: dict | None = None
    ablation_plan: dict | None = None
    job_config: dict | None = None
    probe_summary: dict | None = None
    probe_config: dict | None = None

    @property
    def methods(self) -> list[str]:
        """Non-ablation methods: klein first, then the known baselines, then the rest."""
        main = [m for m in self.manifests if not is_ablation(m)]
        rank = {m: i for i, m in enumerate((BASE_METHOD,) + BASELINE_ORDER)}
        return sorted(main, key=lambda m: (rank.get(m, len(rank)), m))


def collect_inputs(out: Path, data: Path | None = None, probe: Path | None = None,
                   pred: Path | None = None) -> ReportInputs:
    """Read every file the report may use; nothing here raises for a missing file."""
    out = Path(out)
    score_config = _read_json(out / "score_config.json")
    if pred is None:
        pred = out / "pred"
        # `evaluate score --pred` elsewhere: score_config.json remembers where
        alt = (score_config or {}).get("pred_dir")
        if not pred.is_dir() and alt and Path(alt).is_dir():
            pred = Path(alt)
    if data is None and (score_config or {}).get("data_dir"):
        data = Path(score_config["data_dir"])
    manifests, configs = {}, {}
    if Path(pred).is_dir():
        from evaluate.predictions import PredictionStore

        for d in sorted(p for p in Path(pred).iterdir() if p.is_dir()):
            store = PredictionStore(pred, d.name)
            man = store.index() if store.sidecars() else _read_json(d / "manifest.json")
            if man is not None and (man or (d / "manifest.json").is_file()):
                manifests[d.name] = man
                cfg = _read_json(d / "config.json")
                if cfg is not None:
                    configs[d.name] = cfg
    probe = Path(probe) if probe is not None else None
    has_probe = probe is not None and probe.is_dir()
    return ReportInputs(
        out=out, data=Path(data) if data is not None else None, pred=Path(pred), probe=probe,
        manifests=manifests, method_configs=configs,
        summary=_read_json(out / "score_summary.json"), scores=_read_csv(out / "scores.csv"),
        invariance=_read_csv(out / "invariance.csv"), score_config=score_config,
        link=_read_json(out / "link.json"), ablation=_read_json(out / "ablation.json"),
        ablation_plan=_read_json(out / "ablation_plan.json"), job_config=_read_json(out / "config.json"),
        probe_summary=_read_json(probe / "summary.json") if has_probe else None,
        probe_config=_read_json(probe / "config.json") if has_probe else None)


def _model_record(rec: Any) -> tuple[str | None, bool]:
    """(model name, random weights?) of a `model` field: a describe() dict or a plain id."""
    if isinstance(rec, dict):
        name = rec.get("model") or (rec.get("spec") or {}).get("model")
        return (str(name) if name else None), bool(rec.get("random_weights")) or name == "tiny"
    if isinstance(rec, str):
        return rec, rec == "tiny"
    return None, False


def random_weight_sources(inp: ReportInputs) -> list[tuple[str, str | None]]:
    """(file, model name) for every record that says the weights were random."""
    found: list[tuple[str, str | None]] = []
    for m, man in inp.manifests.items():
        name, rnd = _model_record(man.get("model"))
        if rnd or man.get("random_weights"):
            found.append((f"pred/{m}/manifest.json", name))
            continue
        for e in man.get("predictions") or []:
            if isinstance(e, dict) and e.get("random_weights"):
                found.append((f"pred/{m}/{e.get('sample', '?')}.json", _model_record(e.get("model"))[0]))
                break
    for m, cfg in inp.method_configs.items():
        name, rnd = _model_record(cfg.get("model"))
        if rnd:
            found.append((f"pred/{m}/config.json", name))
    if inp.link and inp.link.get("random_weights"):
        found.append(("link.json", None))
    if inp.probe_summary and inp.probe_summary.get("random_weights"):
        found.append(("probe summary.json", None))
    if inp.probe_config:
        name, rnd = _model_record(inp.probe_config.get("model"))
        if rnd:
            found.append(("probe config.json", name))
    if inp.job_config:
        name, rnd = _model_record((inp.job_config.get("args") or {}).get("model"))
        if rnd:
            found.append(("config.json", name))
    return found


# ---------------------------------------------------------------------------------------------
# document blocks, rendered to markdown and to HTML alike


@dataclass(frozen=True)
class Block:
    kind: str                  # h | p | note | warn | table | img | details | list
    text: str = ""
    level: int = 2
    headers: tuple = ()
    rows: tuple = ()
    path: str = ""             # img: path relative to OUT
    children: tuple = ()       # details: blocks shown collapsed (instead of a JSON text)


def H(text: str, level: int = 2) -> Block:
    return Block("h", text, level)


def P(text: str) -> Block:
    return Block("p", text)


def Note(text: str) -> Block:
    return Block("note", text)


def Table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Block:
    return Block("table", headers=tuple(headers), rows=tuple(tuple(str(c) for c in r) for r in rows))


def Img(path: str, alt: str) -> Block:
    return Block("img", alt, path=path)


def Details(summary: str, body: str = "", children: Sequence[Block] = ()) -> Block:
    return Block("details", summary, rows=((body,),), children=tuple(children))


def Items(items: Sequence[str]) -> Block:
    return Block("list", rows=tuple((str(i),) for i in items))


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h":
            out.append("#" * b.level + " " + b.text)
        elif b.kind in ("p", "warn"):
            out.append(b.text)
        elif b.kind == "note":
            out.append(f"_{b.text}_")
        elif b.kind == "table":
            lines = ["| " + " | ".join(_md_cell(h) for h in b.headers) + " |",
                     "|" + "|".join("---" for _ in b.headers) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join(lines))
        elif b.kind == "img":
            out.append(f"![{b.text}]({b.path})")
        elif b.kind == "details":
            inner = to_markdown(b.children).strip() if b.children else f"```json\n{b.rows[0][0]}\n```"
            out.append(f"<details><summary>{html.escape(b.text)}</summary>\n\n{inner}\n\n</details>")
        elif b.kind == "list":
            out.append("\n".join(f"- {r[0]}" for r in b.rows))
    return "\n\n".join(out) + "\n"


def _inline_html(s: str) -> str:
    """The markdown subset used inside this report's paragraphs and cells: `code` and **bold**."""
    s = html.escape(s, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return s


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:left}th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}
.warn{background:#fde2e2;border:2px solid #c00;padding:.6em;font-size:1.1em}.note{color:#666;font-style:italic}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}"""


def to_html(blocks: Sequence[Block], out: Path, title: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{_html_body(blocks, out)}\n</body></html>\n")


def _html_body(blocks: Sequence[Block], out: Path) -> str:
    parts: list[str] = []
    for b in blocks:
        if b.kind == "h":
            parts.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline_html(b.text)}</p>")
        elif b.kind == "warn":
            parts.append(f"<p class='warn'>{_inline_html(b.text)}</p>")
        elif b.kind == "note":
            parts.append(f"<p class='note'>{_inline_html(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>" for r in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "img":
            f = out / b.path
            if f.is_file():  # embedded: the HTML is one file that can be mailed or moved alone
                data = base64.b64encode(f.read_bytes()).decode("ascii")
                parts.append(f"<p><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'></p>")
            else:
                parts.append(f"<p class='note'>figure {html.escape(b.path)} is missing</p>")
        elif b.kind == "details":
            inner = _html_body(b.children, out) if b.children else f"<pre>{html.escape(b.rows[0][0])}</pre>"
            parts.append(f"<details><summary>{html.escape(b.text)}</summary>{inner}</details>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(r[0])}</li>" for r in b.rows) + "</ul>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# number formatting


def _f(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        x = float(v)  # "inf" strings from score_summary's JSON cleaning read back too
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _num(v: Any) -> str:
    x = _f(v)
    if x is None:
        return DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.4g}"


def _ci_bounds(stat: dict) -> tuple[float | None, float | None]:
    """The CI to show: the studentised one when the summary has it, else (older files) the percentile one."""
    if "ci95_studentized_low" in stat:
        return _f(stat.get("ci95_studentized_low")), _f(stat.get("ci95_studentized_high"))
    return _f(stat.get("ci95_low")), _f(stat.get("ci95_high"))


def _mean_ci(stat: dict | None, counts: bool = False) -> str:
    """mean [CI]; counts=True adds the non-finite and capped counts when there are any."""
    if not stat or _f(stat.get("mean")) is None:
        if counts and stat and stat.get("n_nonfinite") and not str(stat.get("status", "")).startswith("not computed"):
            return f"{DASH} ({stat['n_nonfinite']} non-finite)"
        return DASH
    lo, hi = _ci_bounds(stat)
    text = (f"{_num(stat['mean'])} (n={stat.get('n', '?')}, no CI)" if lo is None or hi is None
            else f"{_num(stat['mean'])} [{_num(lo)}, {_num(hi)}]")
    if counts:
        extra = ([f"{stat['n_nonfinite']} non-finite"] if stat.get("n_nonfinite") else []) + (
            [f"{stat['n_capped']} capped at {_num(stat.get('cap'))}"] if stat.get("n_capped") else [])
        if extra:
            text += " (" + ", ".join(extra) + ")"
    return text


def _ci_pair(mean: Any, ci: Any) -> str:
    if _f(mean) is None:
        return DASH
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and _f(ci[0]) is not None and _f(ci[1]) is not None:
        return f"{_num(mean)} [{_num(ci[0])}, {_num(ci[1])}]"
    return f"{_num(mean)} (no CI)"


# ---------------------------------------------------------------------------------------------
# sections


def _cmd(inp: ReportInputs, sub: str, extra: str = "") -> str:
    data = f" --data {inp.data}" if inp.data is not None and sub not in ("link",) else ""
    return f"`python -m evaluate {sub}{data} --out {inp.out}{extra}`"


def _probe_arg(inp: ReportInputs) -> str:
    return f" --probe {inp.probe}" if inp.probe is not None else " --probe PROBE_DIR"


def section_metrics(inp: ReportInputs) -> list[Block]:
    from evaluate.metrics import metric_direction

    blocks = [H("Metrics against ground truth albedo")]
    s = inp.summary
    if s is None or "methods" not in s:
        return blocks + [Note(f"No score_summary.json in {inp.out}: run {_cmd(inp, 'score')} to make it.")]
    methods = [m for m in s["methods"] if not is_ablation(m)]
    rank = {m: i for i, m in enumerate((BASE_METHOD,) + BASELINE_ORDER)}
    methods.sort(key=lambda m: (rank.get(m, len(rank)), m))
    all_cols = list(next(iter(s["methods"].values()), {}).get("metrics", {})) if s["methods"] else []
    cols = [c for c in KEY_METRICS if c in all_cols]
    lp = s.get("lpips") or {}
    clustered = s.get("clusters") == "base_scene"
    common = s.get("common_samples") if all("metrics_common" in s["methods"][m] for m in methods) else None
    n_base = s.get("n_base_scenes", s.get("n_clusters", "?"))
    scenes = _scene_words(s)
    blocks.append(P(f"Mean over samples [95% CI, {s.get('n_boot', '?')} bootstrap resamples "
                    + (f"of the {n_base} scenes (a scene's lightings and colour variants are resampled together: they "
                       "are not independent); studentised (bootstrap-t), which holds its level with few scenes"
                       if clustered else "of samples (this score_summary.json predates clustered CIs)")
                    + f"], computed on mask pixels only; {s.get('n_samples', '?')} samples of {scenes}. "
                    + (f"Every method in this table is averaged over the same {common.get('n_samples')} samples of "
                       f"{common.get('n_base_scenes')} scenes, the ones every method scored (a sample one method "
                       "failed on is left out of all rows; `n ok / n errors` gives each method's own count). "
                       if common else "Each method is averaged over its own ok samples (this score_summary.json "
                                      "predates the common-sample headline). ")
                    + "Headline: every metric under `scalar` alignment (one least-squares scale per prediction, fitted "
                    "in linear space; sRGB columns encode the aligned prediction), so methods whose albedo scale is "
                    "arbitrary are compared fairly. Column names read `metric_space_alignment`: `linear` = "
                    "linear-light RGB, `srgb` = both images sRGB-encoded. A cell's non-finite count is of samples "
                    "whose value could not be computed; a perfect prediction's PSNR (infinite) counts as "
                    f"{_num((s.get('psnr_cap') or {}).get('cap_db', 100))} dB, and the cell says how many were capped."))
    field = "metrics_common" if common else "metrics"

    def table(columns: list[str], headline: bool = False) -> Block:
        rows = []
        for m in methods:
            ms = s["methods"][m]
            cells = [_mean_ci(ms.get(field, {}).get(c), counts=True) for c in columns]
            n = [st.get("n", 0) + st.get("n_nonfinite", 0) for st in ms.get(field, {}).values() if isinstance(st, dict)]
            ncl = max((st.get("n_clusters", 0) for st in ms.get(field, {}).values() if isinstance(st, dict)), default=0)
            row = [f"`{m}`", *cells, f"{max(n, default=0)} / {ncl}"]
            if headline:
                row.append(_degenerate_cell(ms))
            rows.append(row + [f"{ms.get('n_ok', '?')} / {ms.get('n_errors', '?')}"])
        return Table(["method", *[f"`{c}`" for c in columns], "samples / scenes"]
                     + (["degenerate"] if headline else []) + ["n ok / n errors"], rows)

    if not methods:
        blocks.append(Note("score_summary.json lists no method apart from ablation runs."))
        return blocks
    blocks.append(table(cols, headline=True))
    blocks.append(P("`degenerate`: predictions that are zero, constant or near-constant over the mask (relative "
                    "spatial spread under a tenth of the ground truth's), counted per method; they are scored, and "
                    "left out of the illumination-invariance pairs."))
    blocks += _reference_note(s, methods)
    blocks += _paired_block(s, methods, [c for c in cols if c not in _signed_columns()])
    if any(c.startswith("lpips") for c in all_cols) and not lp.get("available", False):
        blocks.append(P(f"LPIPS ({DASH}): not computed: {lp.get('reason', 'no reason recorded')}."))
    docs = dict(s.get("columns") or {})
    try:
        from evaluate.metrics import COLUMN_DOCS

        docs = {**COLUMN_DOCS, **docs}
    except ImportError:  # pragma: no cover - metrics is part of this package
        pass
    from evaluate.metrics import metric_kind

    def better(c: str) -> str:
        kind = metric_kind(c)
        if kind == "signed":
            return "signed: 0 is best, the sign is a direction; never ranked"
        return "lower is better" if metric_direction(c) > 0 else "higher is better"

    legend = [f"`{c}` ({better(c)}): {docs.get(c, 'no definition recorded')}" for c in cols]
    blocks += [P("**Definitions**"), Items(legend)]
    rest = [c for c in all_cols if c not in cols]
    if rest:
        blocks.append(Details("the other metric columns (alignments `none` and `per_channel`)",
                              children=[table(rest)]))
    return blocks


def _signed_columns() -> set[str]:
    from evaluate.metrics import SIGNED_COLUMNS

    return set(SIGNED_COLUMNS)


def _scene_words(s: dict) -> str:
    """'25 scenes (50 scene versions: the originals and 25 colour variants)' from a score summary's counts."""
    n_base = s.get("n_base_scenes", s.get("n_clusters"))
    n_var = s.get("n_colour_variants")
    if n_base is None:
        return f"{s.get('n_scenes', '?')} scenes"
    if n_var:
        return (f"{n_base} scenes ({s.get('n_scene_versions', s.get('n_scenes', '?'))} scene versions: the originals "
                f"and {n_var} colour variants, the same scenes with other surface colours)")
    return f"{n_base} scenes"


def _degenerate_cell(ms: dict) -> str:
    n = ms.get("n_degenerate")
    if not n:
        return "0" if n == 0 else DASH
    kinds = ms.get("n_degenerate_by_kind") or {}
    parts = [f"{v} {k}" for k, v in kinds.items() if v]
    return f"{n}" + (f" ({', '.join(parts)})" if parts else "")


def _reference_note(s: dict, methods: list[str]) -> list[Block]:
    """Which methods' inputs were changed before the model saw them (scores.csv reference_* columns)."""
    out = []
    for m in methods:
        ms = s["methods"][m]
        down, up = ms.get("n_reference_downscaled") or 0, ms.get("n_reference_upscaled") or 0
        if down:
            out.append(f"`{m}`: {down} of {ms.get('n_ok', '?')} predictions were made from a reference larger than the "
                       "model's maximum side, area-downscaled before the model saw it, and its output was upsampled "
                       "back: geometry exact, resolution lost (not pixel-exact; `reference_exact` false in scores.csv)")
        if up:
            out.append(f"`{m}`: {up} predictions were made from a reference under the model's 64-px minimum, upscaled "
                       "by an integer factor (each pixel a block) and averaged back per block (exact)")
        if not down and not up and ms.get("n_reference_transform"):
            out.append(f"`{m}`: every model input was the render itself, padded to multiples of 16, and the output "
                       "was cropped back pixel-exactly")
    return [P("**Model inputs**: " + "; ".join(out) + ".")] if out else []


def _paired_block(s: dict, methods: list[str], cols: list[str]) -> list[Block]:
    pd = s.get("paired_differences")
    if not isinstance(pd, dict) or BASE_METHOD not in methods:
        return []
    others = [m for m in methods if m != BASE_METHOD and isinstance(pd.get(m), dict)]
    if not others:
        return []
    rows = [[f"`{BASE_METHOD}` − `{m}`", *[_mean_ci(pd[m].get(c), counts=True) for c in cols],
             str(max((pd[m].get(c) or {}).get("n", 0) for c in cols)),
             str(max((pd[m].get(c) or {}).get("n_clusters", 0) for c in cols))] for m in others]
    n_cmp = len(others) * len(cols)
    return [P(f"**Paired differences**: per sample, `{BASE_METHOD}` minus the other method on the same sample, "
              "mean over the samples both scored [95% CI, studentised, resampling scenes]. For errors a negative "
              f"difference favours klein; for PSNR a positive one does. This table holds {n_cmp} comparisons "
              f"({len(others)} method(s) x {len(cols)} columns, the columns strongly related): each CI is at 95 % on "
              f"its own, uncorrected for the other {n_cmp - 1}, so with no difference anywhere about "
              f"{0.05 * n_cmp:.2g} of them would still exclude 0 by chance. Read one pre-chosen column "
              f"(`{cols[0] if cols else DASH}`, the link's and ablation's metric) as the test; the rest describe."),
            Table(["difference", *[f"`{c}`" for c in cols], "n samples", "scenes"], rows)]


def section_invariance(inp: ReportInputs) -> list[Block]:
    from evaluate.stats import bootstrap_mean_ci

    blocks = [H("Illumination invariance (beside accuracy)")]
    rows = inp.invariance
    if rows is None:
        return blocks + [Note(f"No invariance.csv in {inp.out}: run {_cmd(inp, 'score')} to make it.")]
    cols = [c for c in (rows[0].keys() if rows else []) if c.startswith("inv_")]
    if not rows or not cols:
        return blocks + [Note("invariance.csv has no rows: no scene has predictions under two lightings.")]
    head = [c for c in cols if c.startswith("inv_nmse")] or cols
    legacy = [c for c in cols if c not in head]
    methods = sorted({r["method"] for r in rows if not is_ablation(r["method"])},
                     key=lambda m: ({m: i for i, m in enumerate((BASE_METHOD,) + BASELINE_ORDER)}.get(m, 99), m))
    n_boot = int((inp.summary or {}).get("n_boot", 1000) or 0)
    acc_col = KEY_METRICS[0]
    msum = (inp.summary or {}).get("methods") or {}

    def table(columns: list[str]) -> list[list[str]]:
        out = []
        for m in methods:
            mr = [r for r in rows if r["method"] == m]
            cells = []
            for c in columns:
                pairs = [(x, r.get("base_scene") or r.get("scene")) for r in mr if (x := _f(r.get(c))) is not None]
                cells.append(_mean_ci(bootstrap_mean_ci([x for x, _ in pairs], n_boot=n_boot, seed=0,
                                                        clusters=[c_ for _, c_ in pairs])) if pairs else DASH)
            n_used = sum(1 for r in mr if _f(r.get(columns[0])) is not None)
            n_deg = sum(int(_f(r.get("n_degenerate")) or 0) for r in mr)
            acc = _mean_ci(((msum.get(m) or {}).get("metrics") or {}).get(acc_col))
            n_cl = len({r.get("base_scene") or r.get("scene") for r in mr if _f(r.get(columns[0])) is not None})
            out.append([f"`{m}`", acc, *cells, str(n_deg), f"{n_used} / {len(mr)}", str(n_cl)])
        return out

    blocks.append(P("Per scene version (a scene or one of its colour variants: each has its own albedo): "
                    "disagreement between its predictions under its different lightings "
                    "(linear values, after scale alignment), normalised by the predictions' energy so that it does "
                    "not reward dark outputs; mean over scene versions [95% CI, studentised, resampling scenes: a "
                    "scene's colour variants are resampled with it]. Ground truth scores 0; "
                    "lower is more consistent. Consistency alone is not correctness (a constant output is perfectly "
                    f"consistent), so accuracy (`{acc_col}`) stands beside it, and degenerate predictions (zero, "
                    "constant or near-constant over the mask) are left out of the pairs and counted."))
    headers = ["degenerate predictions", "scene versions used / scene versions", "scenes"]
    blocks.append(Table(["method", f"accuracy `{acc_col}`", *[f"`{c}`" for c in head], *headers], table(head)))
    try:
        from evaluate.metrics import COLUMN_DOCS

        blocks.append(Items([f"`{c}`: {COLUMN_DOCS[c]}" for c in head if c in COLUMN_DOCS]))
    except ImportError:  # pragma: no cover
        pass
    if legacy:
        blocks.append(Details("the earlier, scale-dependent `inv_mse_linear_*` (do not rank methods by it)",
                              children=[Table(["method", f"accuracy `{acc_col}`", *[f"`{c}`" for c in legacy],
                                               *headers], table(legacy))]))
    return blocks


def section_link(inp: ReportInputs) -> list[Block]:
    blocks = [H("Link: probe selectivity vs albedo error")]
    ln = inp.link
    if ln is None:
        return blocks + [Note(f"No link.json in {inp.out}: run "
                              f"`python -m evaluate link{_probe_arg(inp)} --out {inp.out}` to make it.")]
    if "_unreadable" in ln:
        return blocks + [Note(f"link.json is unreadable ({ln['_unreadable']}).")]
    sp = ln.get("spearman") or {}
    kind = ln.get("kind", "indirect: text probe, per scene (link.json predates the direct link)")
    if not kind.startswith("direct"):
        blocks.append(P("**Indirect link**: the text probe's selectivity comes from prompts, never from the rendered "
                        "image klein edits; an image probe (`probe run --stimuli images`) gives the direct, per-sample "
                        "link."))
    half = ln.get("expected_halfwidth_at_0", sp.get("expected_halfwidth_at_0"))
    cm = sp.get("cluster_means") or {}
    ps = ln.get("partial_spearman") or {}
    n_sc = str(ln.get("n_clusters", sp.get("n_clusters", "?")))
    blocks.append(Table(
        ["kind", "method", "metric", "Spearman rho [95% CI] (samples, CI over scenes)", "rho over scene means [95% CI], p",
         f"rho over scene means controlling for `{ps.get('control', 'image_as_albedo')}`'s error [95% CI], p",
         "p (samples as independent)", "n points", "scenes", "CI half-width expected at rho = 0", "bootstrap resamples"],
        [[kind, f"`{ln.get('method', '?')}`", f"`{ln.get('metric', '?')}`",
          _ci_pair(sp.get("rho"), [sp.get("ci_low"), sp.get("ci_high")]),
          (f"{_ci_pair(cm.get('rho'), [cm.get('ci_low'), cm.get('ci_high')])}, p = {_num(cm.get('p'))}" if cm else "n/a"),
          (f"{_ci_pair(ps.get('rho'), [ps.get('ci_low'), ps.get('ci_high')])}, p = {_num(ps.get('p'))}"
           if ps.get("available") else ("not computed: " + ps.get("reason", "") if ps else "n/a (older link.json)")),
          _num(sp.get("p")),
          str(ln.get("n_matched", sp.get("n", "?"))), n_sc,
          _num(half), str(sp.get("n_boot", "?"))]]))
    blocks.append(P(f"Every interval here is over {n_sc} scenes. The CI of the sample-level rho resamples scenes; the "
                    "expected half-width at rho = 0 (Fisher z, for the number of scenes) is the power: a CI about "
                    "that wide around 0 is what no link looks like. The p to read is over scene means (one point per "
                    "scene: independent units); the p over samples takes a scene's samples as independent and is "
                    "optimistic, shown only beside it. **The confound**: a sample's selectivity (render minus its "
                    "albedo image) and klein's error both grow with how far the render is from its albedo (its "
                    "shading), so a positive rho is expected with no mechanism at all. The controlled rho partials "
                    f"out `{ps.get('control', 'image_as_albedo')}`'s error on the same samples (the image taken as its "
                    "albedo: that distance, in the same metric); a link that holds beside it is not shading strength."
                    + (f" Selectivity follows the control with rho = {_num(ps.get('rho_selectivity_control'))}, the "
                       f"error with rho = {_num(ps.get('rho_error_control'))} (scene means)." if ps.get("available")
                       else "")))
    sel = ln.get("selection") or {}
    if sel.get("rule"):
        blocks.append(P(f"Units ({ln.get('top_k', '?')}): {sel['rule']}."))
    if ln.get("definition"):
        blocks.append(P(f"Definition: {ln['definition']}."))
    fig = inp.out / "figures" / "link_scatter.png"
    blocks.append(Img("figures/link_scatter.png", "selectivity vs error") if fig.is_file()
                  else Note(f"figures/link_scatter.png is missing: rerun `python -m evaluate link{_probe_arg(inp)}"
                            f" --out {inp.out}`."))
    return blocks


def _ablation_plot(path: Path, ab: dict, metric: str, random_weights: bool) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in ab.get("by_k", {}) if (ab["by_k"][k].get("metrics") or {}).get(metric)]
    if not ks:
        return False
    fig, ax = plt.subplots(figsize=(max(4.8, 1.6 + 1.4 * len(ks)), 3.8), dpi=120)
    for i, k in enumerate(ks):
        e = ab["by_k"][k]["metrics"][metric]
        # top-k: its mean harm with the CI over scenes; random k: every draw's mean harm as a point and their mean
        # as a line, no interval, so the two cannot be read as two CIs of one kind
        m = _f(e.get("top_harm_mean"))
        if m is not None:
            ci = e.get("top_harm_ci_studentized", e.get("top_harm_ci"))
            lo, hi = (_f(ci[0]), _f(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
            yerr = ([[m - lo], [hi - m]] if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)
                    else None)
            ax.bar(i - 0.18, m, width=0.34, color="tab:red", yerr=yerr, capsize=3,
                   label="top-k mean harm, 95% CI over scenes" if i == 0 else None)
        draws = [x for x in (_f(v) for v in e.get("random_draw_means") or []) if x is not None]
        if draws:
            ax.scatter(np.full(len(draws), i + 0.18), draws, s=14, color="tab:grey", zorder=3,
                       label="random k: each draw's mean harm" if i == 0 else None)
            ax.hlines(float(np.mean(draws)), i + 0.04, i + 0.32, color="black", lw=1.5,
                      label="random k: mean of the draws" if i == 0 else None)

    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(ks)), [f"k = {k}\nrank p = {_num(ab['by_k'][k]['metrics'][metric].get('rank_p_top_hurts_more'))}"
                                   for k in ks])
    ax.set_ylabel("harm: ablated - unablated\n(> 0 = worse)", fontsize=8)
    ax.set_title(("RANDOM WEIGHTS - not a finding\n" if random_weights else "") + f"top-k vs random-k head ablation ({metric})",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def section_ablation(inp: ReportInputs, random_weights: bool) -> list[Block]:
    blocks = [H("Ablation: top-k selective heads vs random heads")]
    ab = inp.ablation
    if ab is None:
        return blocks + [Note(f"No ablation.json in {inp.out}: run "
                              f"{_cmd(inp, 'ablate', _probe_arg(inp))} to make it.")]
    if "_unreadable" in ab:
        return blocks + [Note(f"ablation.json is unreadable ({ab['_unreadable']}).")]
    if ab.get("skipped"):
        return blocks + [Note("Not run: " + "; ".join(f"top-{k}: {w}" for k, w in ab["skipped"].items()) + ".")]
    metric = ab.get("primary_metric", "?")
    rows, rules, pools = [], [], []
    matches = set()
    for k, entry in (ab.get("by_k") or {}).items():
        sel = entry.get("selection") or {}
        matches.add(sel.get("match", "group"))
        if sel.get("rule"):
            rules.append(f"k = {k}: {sel['rule']}" + (f" **({sel['n_filled']} of {k} heads not selective)**"
                                                       if sel.get("n_filled") else ""))
        pool, hv = sel.get("random_pool") or {}, entry.get("harm_vs_n_eligible") or {}
        if pool.get("n_heads"):
            pools.append(f"k = {k}: the draws came from {pool['n_heads']} heads, {pool['n_eligible']} of them "
                         "selective by the same rule; by token region " + ", ".join(
                             f"{r} {n} ({(pool.get('eligible_by_region') or {}).get(r, 0)} selective)"
                             for r, n in sorted(pool["by_region"].items()))
                         + "; the top-k: " + ", ".join(f"{r} {n}" for r, n in sorted(
                             (pool.get("top_by_region") or {}).items()))
                         + (f". Over the draws, harm against how many selective heads a draw holds: Spearman rho "
                            f"{_num(hv.get('rho'))} ({hv.get('n_draws')} draws; mean harm by count: " + ", ".join(
                                f"{c}: {_num(v)}" for c, v in (hv.get("mean_harm_by_n_eligible") or {}).items())
                            + ")" if hv else ""))
        e = (entry.get("metrics") or {}).get(metric)
        if not e:
            rows.append([k, DASH, DASH, DASH, DASH, DASH, DASH, "primary metric not computed"])
            continue
        p = e.get("rank_p_top_hurts_more", e.get("p_top_hurts_more"))
        pmin = e.get("p_min_attainable")
        if pmin is None and e.get("n_random_draws"):
            pmin = 1 / (1 + e["n_random_draws"])
        rng_ = e.get("random_draw_range") or [None, None]
        draws = (f"mean {_num(e.get('random_harm_mean'))}; draws from {_num(rng_[0])} to {_num(rng_[1])}"
                 if _f(e.get("random_harm_mean")) is not None else DASH)
        overlap = entry.get("random_overlap_with_top")
        rows.append([k, _num(p), _num(pmin), _ci_pair(e.get("top_harm_mean"),
                                                      e.get("top_harm_ci_studentized", e.get("top_harm_ci"))),
                     draws, str(e.get("n_random_draws", "?")),
                     str(sum(overlap)) if isinstance(overlap, list) else DASH,
                     f"{e.get('n_samples', '?')} / {e.get('n_clusters', '?')}"])
    blocks.append(P(f"Primary metric `{metric}`. **Read the rank p first**: rank p = (1 + #draws whose mean harm >= "
                    "top-k's) / (1 + #draws) for 'top-k hurts more than random k'; it cannot go below 1/(1 + #draws), "
                    "listed as the smallest attainable p (19 draws are needed to reach 0.05). Harm = metric(ablated) - "
                    "metric(unablated) per sample, signed so that > 0 means worse. Top-k: mean harm over samples "
                    "[95% CI over scenes, studentised: how well the samples pin down this one head set's harm]. "
                    + ("Random k: k heads drawn from the other heads of the top-k's block groups (same blocks and "
                       "token regions, " if matches == {"group"} else
                       "Random k: k heads drawn from the other heads of the top-k's blocks (either token region with "
                       "`--match block`, " if matches == {"block"} else
                       "Random k: k heads drawn from the other heads of the top-k's block groups or blocks (`match` "
                       "in ablation.json, ")
                    + "never a top-k head; the overlap column counts any top-k head in a draw); shown as the "
                    "mean and the range of the draws' mean harms, the distribution the rank p compares with. The two "
                    "are different kinds of spread (over scenes for one head set; over head sets), so a top-k CI that "
                    "misses the random range is not a test: the rank p is. "
                    + (f"Ablation: {inp.ablation_plan.get('definition')}." if inp.ablation_plan and
                       inp.ablation_plan.get("definition") else "")))
    blocks.append(Table(["k", "rank p", "smallest attainable p", "top-k harm [95% CI over scenes]",
                         "random k: draws' mean harms", "random draws", "top-k heads in the draws",
                         "samples / scenes"], rows))
    if rules:
        blocks += [P("**Which heads** (the selection rule, as applied):"), Items(rules)]
    if pools:
        blocks += [P("**What the random draws came from** (context, not a test: a pool mostly made of selective heads "
                     "asks which selective heads, not whether selective ones; a harm that rises with a draw's "
                     "selective-head count says selectivity matters whichever heads carry it):"), Items(pools)]
    if _ablation_plot(inp.out / "figures" / "ablation.png", ab, metric, random_weights):
        blocks.append(Img("figures/ablation.png", "ablation harm per k"))
    others = sorted({m for entry in (ab.get("by_k") or {}).values() for m in (entry.get("metrics") or {})} - {metric})
    if others:
        blocks.append(P("The same comparison for every metric column is in `ablation.csv`."))
    return blocks


def section_errors(inp: ReportInputs) -> list[Block]:
    blocks = [H("Errors")]
    if inp.scores is None:
        return blocks + [Note(f"No scores.csv in {inp.out}: run {_cmd(inp, 'score')} to make it.")]
    errs = [r for r in inp.scores if r.get("status") != "ok"]
    if not errs:
        return blocks + [P(f"No error rows in scores.csv ({len(inp.scores)} rows, all ok).")]
    blocks.append(P(f"{len(errs)} of {len(inp.scores)} (method, sample) rows of scores.csv are errors"
                    + (f"; the first {MAX_ERROR_ROWS} are listed" if len(errs) > MAX_ERROR_ROWS else "") + ":"))
    blocks.append(Table(["method", "sample", "error"],
                        [[f"`{r.get('method', '')}`", r.get("sample", ""), r.get("error", "")]
                         for r in errs[:MAX_ERROR_ROWS]]))
    return blocks


def _json_block(title: str, obj: Any) -> Block:
    text = json.dumps(obj, indent=2, default=str)
    if len(text) > MAX_JSON_CHARS:
        text = text[:MAX_JSON_CHARS] + f"\n... ({len(text) - MAX_JSON_CHARS} more characters in the file)"
    return Details(title, text)


def section_configs(inp: ReportInputs) -> list[Block]:
    blocks = [H("Configuration of this run")]
    rows = []
    for m in inp.methods + sorted(m for m in inp.manifests if is_ablation(m)):
        man, cfg = inp.manifests[m], inp.method_configs.get(m, {})
        name, rnd = _model_record(man.get("model", cfg.get("model")))
        rev = (man.get("model") or {}).get("revision") if isinstance(man.get("model"), dict) else None
        what = man.get("prompt", cfg.get("prompt")) or man.get("description") or ""
        abl = man.get("ablated_units") or (cfg.get("config") or {}).get("ablate") or []
        rows.append([f"`{m}`", (name or DASH) + (f" @ {rev}" if rev else ""), "yes" if rnd else ("no" if name else DASH),
                     _num(man.get("steps", cfg.get("steps"))), _num(man.get("guidance", cfg.get("guidance"))),
                     str(man.get("seed", (cfg.get("config") or {}).get("seed", DASH))), what,
                     str(len(man.get("predictions") or [])), str(len(abl)) if abl else DASH])
    if rows:
        blocks.append(Table(["method", "model", "random weights", "steps", "guidance", "seed", "prompt / description",
                             "predictions", "ablated heads"], rows))
    else:
        blocks.append(Note(f"No prediction folders in {inp.pred}: run {_cmd(inp, 'generate')} "
                           f"(and {_cmd(inp, 'baselines')})."))
    files = [("config.json (the `evaluate all` job)", inp.job_config), ("score_config.json", inp.score_config),
             ("ablation_plan.json", inp.ablation_plan)]
    files += [(f"pred/{m}/config.json", c) for m, c in inp.method_configs.items() if not is_ablation(m)]
    files += [("probe config.json", inp.probe_config)]
    present = [(t, o) for t, o in files if o is not None]
    blocks += [_json_block(t, o) for t, o in present]
    made_by = {"config.json": "`python -m evaluate all`", "score_config.json": "`python -m evaluate score`",
               "ablation_plan.json": "`python -m evaluate ablate`"}
    missing = [t.split(" ")[0] for t, o in files[:3] if o is None]
    if missing:
        blocks.append(Note("Not in this folder: " + ", ".join(f"{t} (written by {made_by[t]})" for t in missing) + "."))
    return blocks


# ---------------------------------------------------------------------------------------------
# per-sample grids


def spread_samples(samples: Sequence[tuple[str, str]], n: int) -> list[str]:
    """Up to n sample ids from (id, scene) pairs, as many scenes as possible, evenly spaced over them.

    Round r takes each scene's r-th sample; a round larger than what is left is thinned evenly.
    """
    by_scene: dict[str, list[str]] = {}
    for sid, scene in sorted(samples, key=lambda t: (t[1], t[0])):
        by_scene.setdefault(scene, []).append(sid)
    chosen: list[str] = []
    r = 0
    while len(chosen) < n:
        rnd = [ids[r] for ids in by_scene.values() if len(ids) > r]
        if not rnd:
            break
        left = n - len(chosen)
        if len(rnd) > left:
            rnd = [rnd[i] for i in np.unique(np.round(np.linspace(0, len(rnd) - 1, left)).astype(int))]
        chosen += rnd
        r += 1
    order = {sid: i for i, (sid, _) in enumerate(sorted(samples, key=lambda t: (t[1], t[0])))}
    return sorted(chosen, key=order.__getitem__)


def _load_cells(inp: ReportInputs, ds, sid: str, methods: list[str]) -> dict[str, Any]:
    """Display arrays of one grid row; a failing read becomes that cell's message."""
    from evaluate.metrics import fit_scales
    from evaluate.score import match_size, read_prediction
    from render.imageio import linear_to_srgb, read_png_srgb

    cells: dict[str, Any] = {}
    entry = ds.entry(sid)
    try:
        cells["input"] = read_png_srgb(ds.root / entry["image_srgb"])
    except Exception as e:
        cells["input"] = f"input unreadable:\n{type(e).__name__}"
    try:
        gt = ds.load(sid)
    except Exception as e:
        cells["gt"] = f"GT unreadable:\n{type(e).__name__}"
        return cells
    cells["gt"] = linear_to_srgb(gt.albedo_linear)
    for m in methods:
        pe = {str(e.get("sample")): e for e in inp.manifests[m].get("predictions") or [] if isinstance(e, dict)}
        if sid not in pe:
            cells[m] = "no prediction"
            continue
        try:
            pred, _ = read_prediction(inp.pred / m, pe[sid], finite=False)
            pred, _ = match_size(np.nan_to_num(pred, nan=0.0, posinf=0.0, neginf=0.0), gt.mask.shape)
        except Exception as e:
            cells[m] = f"unreadable:\n{type(e).__name__}"
            continue
        cells[m] = linear_to_srgb(pred)
        if m == BASE_METHOD:
            # the error the headline (scalar) columns see: one LS scale, linear, mask only
            s = fit_scales(gt.albedo_linear, pred, gt.mask, "scalar")
            err = np.abs(gt.albedo_linear.astype(np.float64) - pred * s).mean(axis=-1)
            err[~gt.mask] = np.nan
            cells["error"] = err
    return cells


def _grid_figure(path: Path, rows: list[tuple[str, dict]], columns: list[tuple[str, str]], vmax: float,
                 random_weights: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nr, nc = len(rows), len(columns)
    shapes = [v.shape for _, c in rows for v in c.values() if isinstance(v, np.ndarray)]
    aspect = float(np.median([h / w for h, w, *_ in shapes])) if shapes else 1.0
    fig, axes = plt.subplots(nr, nc, figsize=(1.9 * nc + 0.6, (1.9 * aspect + 0.3) * nr + 0.9), dpi=110,
                             squeeze=False, constrained_layout=True)
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="#bbbbbb")
    err_im = None
    for i, (sid, cells) in enumerate(rows):
        for j, (key, label) in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            v = cells.get(key, "missing")
            if isinstance(v, str):
                ax.text(0.5, 0.5, v, ha="center", va="center", fontsize=7, transform=ax.transAxes)
            elif key == "error":
                err_im = ax.imshow(v, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(np.clip(v, 0, 1), interpolation="nearest")
            if i == 0:
                ax.set_title(label, fontsize=7)
            if j == 0:
                ax.set_ylabel(sid, fontsize=6)
    if err_im is not None:
        # an inset below the last row: a colorbar sharing the layout would shrink the error column
        j = [k for k, _ in columns].index("error")
        cax = axes[-1, j].inset_axes([0.05, -0.16, 0.9, 0.07])
        cb = fig.colorbar(err_im, cax=cax, orientation="horizontal")
        cb.ax.tick_params(labelsize=6)
    if random_weights:
        fig.suptitle("RANDOM WEIGHTS - not a finding", color="red", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def section_grids(inp: ReportInputs, max_grid: int, random_weights: bool) -> list[Block]:
    from evaluate.score import open_dataset

    blocks = [H("Per-sample predictions")]
    for old in (inp.out / "figures").glob("grid_*.png"):
        old.unlink()  # a rerun with fewer rows must not leave stale grids behind
    if inp.data is None or not (inp.data / "manifest.json").is_file():
        return blocks + [Note(f"Render folder {inp.data} with manifest.json not found: run "
                              f"`python -m render --out {inp.data or 'RENDER_DIR'}` (or pass --data).")]
    methods = inp.methods
    if not methods:
        return blocks + [Note(f"No predictions in {inp.pred}: run {_cmd(inp, 'generate')} "
                              f"or {_cmd(inp, 'baselines')} to make them.")]
    if max_grid <= 0:
        return blocks + [Note("Grids disabled (--max-grid 0).")]
    try:
        ds = open_dataset(inp.data)
    except Exception as e:
        return blocks + [Note(f"Render folder {inp.data} unreadable: {e}")]
    pool = [(s.id, s.scene) for s in ds.samples]
    if BASE_METHOD in methods:
        have = {str(e.get("sample")) for e in inp.manifests[BASE_METHOD].get("predictions") or []
                if isinstance(e, dict)}
        pool = [p for p in pool if p[0] in have] or pool
    chosen = spread_samples(pool, max_grid)
    columns = [("input", "input\n(image_srgb, sRGB)"), ("gt", "GT albedo\n(sRGB-encoded)")]
    if BASE_METHOD in methods:
        columns += [(BASE_METHOD, f"{BASE_METHOD}\n(as predicted, sRGB)"), ("error", "")]
    columns += [(m, f"{m}\n(as predicted, sRGB)") for m in methods if m != BASE_METHOD]
    rows = [(sid, _load_cells(inp, ds, sid, methods)) for sid in chosen]
    errs = [c["error"] for _, c in rows if isinstance(c.get("error"), np.ndarray)]
    finite = np.concatenate([e[np.isfinite(e)] for e in errs]) if errs else np.array([])
    # one colour scale for every grid, so rows compare; the 99th percentile keeps an outlier from washing it out
    vmax = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1e-6
    columns = [(k, lab or f"{BASE_METHOD} error |GT - s*pred|\n(linear, one LS scale s)") for k, lab in columns]
    base_of = {x.id: x.base_scene for x in ds.samples}
    n_scenes = len({base_of.get(sid, sc) for sid, sc in pool if sid in set(chosen)})
    n_versions = len({sc for sid, sc in pool if sid in set(chosen)})
    blocks.append(P(f"{len(chosen)} of {len(ds.samples)} samples from {n_scenes} scenes"
                    + (f" ({n_versions} scene versions: originals and colour variants)" if n_versions != n_scenes else "")
                    + ". Columns: the rendered "
                    "input, the ground-truth albedo and every prediction as written (sRGB encoding of the linear "
                    "values clipped to [0, 1]; no scale alignment)"
                    + (f"; error map of `{BASE_METHOD}`: mean over channels of |GT - s * pred| in linear values, "
                       "one s fitted by least squares on the mask (the headline's `*_scalar` alignment), grey "
                       f"outside the mask, colour scale 0 to {vmax:.3g} (99th percentile) on every grid"
                       if BASE_METHOD in methods else f"; no `{BASE_METHOD}` predictions, so no error map")
                    + ". Ablation runs are not shown."))
    for n, start in enumerate(range(0, len(rows), GRID_ROWS_PER_FIGURE), 1):
        name = f"figures/grid_{n}.png"
        _grid_figure(inp.out / name, rows[start:start + GRID_ROWS_PER_FIGURE], columns, vmax, random_weights)
        blocks.append(Img(name, f"samples {start + 1}-{min(start + GRID_ROWS_PER_FIGURE, len(rows))}"))
    return blocks


def section_mit(inp: ReportInputs) -> list[Block]:
    """The MIT intrinsic images benchmark's protocol table (evaluate mit), when OUT holds mit_protocol.json."""
    from evaluate.mit_protocol import report_parts

    make = {"h": H, "p": P, "note": Note, "table": Table}
    return [make[kind](*args) for kind, *args in report_parts(inp.out)]

def known_answer_sources(inp: ReportInputs) -> dict[str, dict]:
    """{file: known-answer record summary} for every model record of a known-answer model (probe.klein.known):
    the prediction folders' manifests and configs, the probe's config."""
    found: dict[str, dict] = {}

    def look(where: str, rec: Any) -> None:
        if isinstance(rec, dict) and isinstance(rec.get("known_answer"), dict) and rec["known_answer"].get("banner"):
            found[where] = rec["known_answer"]

    for m, man in inp.manifests.items():
        look(f"pred/{m}/manifest.json", man.get("model_record"))
        look(f"pred/{m}/manifest.json", man.get("model"))
    for m, cfg in inp.method_configs.items():
        look(f"pred/{m}/config.json", cfg.get("model"))
    if inp.probe_config:
        look("probe config.json", inp.probe_config.get("model"))
    return found


# ---------------------------------------------------------------------------------------------
# the report


def write_report(out: Path, data: Path | None = None, probe: Path | None = None, max_grid: int = 12,
                 pred: Path | None = None) -> Path:
    """Write OUT/report.md and OUT/report.html (+ figures) from what OUT holds; returns report.md's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inp = collect_inputs(out, data, probe, pred)
    sources = random_weight_sources(inp)
    random_weights = bool(sources)
    blocks: list[Block] = []
    if random_weights:
        names = sorted({n for _, n in sources if n})
        which = "--model tiny" if names in ([], ["tiny"]) else "model " + ", ".join(names)
        blocks.append(Block("warn", f"**RANDOM WEIGHTS ({which}): a dry run; nothing in this report is a finding.**"))
        files = sorted({s for s, _ in sources})
        more = f" and {len(files) - 6} more" if len(files) > 6 else ""
        blocks.append(P("Random weights recorded in: " + ", ".join(files[:6]) + more + "."))
    known = known_answer_sources(inp)
    if known and not random_weights:
        recs = {k["name"]: k for k in known.values() if k.get("name")}
        blocks.append(Block("warn", f"**{', '.join(sorted(recs)) or 'known-answer model'}: "
                                    f"{next(iter(known.values()))['banner']}.**"))
        blocks.append(P("; ".join(f"`{n}` {r.get('what', '')}" for n, r in sorted(recs.items())) + ". Known-answer "
                        "model records in: " + ", ".join(sorted(known)) + "."))
    title = "klein albedo evaluation"
    blocks.append(H(title, 1))
    blocks.append(P(f"Evaluation folder `{out}`; render data `{inp.data or DASH}`; predictions `{inp.pred}`; probe "
                    f"`{inp.probe or DASH}`. Methods: " + (", ".join(f"`{m}`" for m in inp.methods) or DASH)
                    + (f"; {sum(is_ablation(m) for m in inp.manifests)} ablation runs" if any(
                        is_ablation(m) for m in inp.manifests) else "") + "."))
    blocks += section_metrics(inp)
    blocks += section_invariance(inp)
    blocks += section_grids(inp, max_grid, random_weights)
    blocks += section_mit(inp)
    blocks += section_link(inp)
    blocks += section_ablation(inp, random_weights)
    blocks += section_errors(inp)
    blocks += section_configs(inp)
    blocks += [H("What changed in the definitions (this version)"), Items(DEFINITION_CHANGES)]

    from render.imageio import atomic_path

    md = out / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text(to_markdown(blocks), encoding="utf-8")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(to_html(blocks, out, title + (" (RANDOM WEIGHTS)" if random_weights else "")), encoding="utf-8")
    return md

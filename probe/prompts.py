"""Prompt pair files for the probe: load, validate, and generate them from scene specs.

    from probe.prompts import load_pairs, default_pairs_path, default_control_path
    pairs = load_pairs(default_pairs_path())      # 25 PromptPair(id, a, b): A = lit photo, B = albedo
    control = load_pairs(default_control_path())  # same ids and A; B = paraphrase of A (lexical control)
    check_control(pairs, control)

    # any scene set, e.g. the output of `python -m render --generate N`: one pair per scene x lighting
    generate_pairs("scenes_dir/", "pairs.jsonl", lighting="all", seed=0)
    generate_control("scenes_dir/", "control.jsonl", lighting="all", seed=0)

    python -m probe.prompts --scenes DIR --out pairs.jsonl --control control.jsonl --seed 0

A pair file is JSON lines, one object per line: {"id": str, "a": str, "b": str}. Blank lines are
ignored and keys other than id/a/b are ignored; everything else wrong is an error naming the file
and the 1-based line. No torch here: `--help` of the probe imports this module.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render.imageio import atomic_path
from render.paths import data_dir

__all__ = [
    "PromptPair",
    "PromptFileError",
    "load_pairs",
    "write_pairs",
    "validate_pairs",
    "check_control",
    "default_pairs_path",
    "default_control_path",
    "default_edit_instructions_path",
    "load_edit_instructions",
    "generate_pairs",
    "generate_control",
    "word_count",
    "add_prompts_arguments",
    "main_prompts",
]

# Ids end up in npz arrays, CSV rows and sample folder names (`<scene>__<lighting>`).
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['\-][A-Za-z0-9]+)*")


@dataclass(frozen=True)
class PromptPair:
    """One paired prompt: `a` the lit photograph, `b` the albedo (or, in a control file, a paraphrase of `a`)."""

    id: str
    a: str
    b: str


class PromptFileError(ValueError):
    """A pair, scene or instruction file that cannot be used; the message starts with `file:line:`."""


def word_count(text: str) -> int:
    """Words as the length checks count them (hyphenated and apostrophe words count once)."""
    return len(_WORD_RE.findall(text))


# ----------------------------------------------------------------------------------------------
# default files


def default_pairs_path() -> Path:
    """The shipped 25 base pairs (A lit photo vs B albedo), keyed by the default scene ids."""
    return data_dir("prompts") / "pairs.jsonl"


def default_control_path() -> Path:
    """The shipped lexical control: same ids and A as `pairs.jsonl`, B a lighting-neutral paraphrase of A."""
    return data_dir("prompts") / "control.jsonl"


def default_edit_instructions_path() -> Path:
    """The shipped albedo editing instructions used by `evaluate generate`."""
    return data_dir("prompts") / "edit_instructions.json"


# ----------------------------------------------------------------------------------------------
# loading and validation


def _no_duplicate_keys(items: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in items]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        # json.loads would silently keep the last value; a doubled "b" is almost surely an edit slip.
        raise ValueError(f"duplicate key(s) {dupes} in one object")
    return dict(items)


def load_pairs(path: str | Path | None = None) -> list[PromptPair]:
    """Read and validate a pair file (default: the shipped `pairs.jsonl`), in file order.

    Raises PromptFileError `"<file>:<line>: <what>"` for unreadable JSON, a non-object line, a missing,
    non-string or empty `id`/`a`/`b`, a malformed or repeated id, or a == b; FileNotFoundError when the
    file is missing; PromptFileError when it holds no pairs.
    """
    path = Path(path) if path is not None else default_pairs_path()
    if not path.is_file():
        raise FileNotFoundError(f"prompt pair file not found: {path}")
    pairs: list[PromptPair] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
            except ValueError as e:  # JSONDecodeError is a ValueError, and so is the duplicate-key hook's
                raise PromptFileError(f"{where}: not valid JSON ({e})") from None
            pair = _pair_from_record(rec, where)
            if pair.id in first_line:
                raise PromptFileError(
                    f"{where}: duplicate id {pair.id!r} (first used on line {first_line[pair.id]})"
                )
            first_line[pair.id] = lineno
            pairs.append(pair)
    if not pairs:
        raise PromptFileError(f"{path}: no prompt pairs in file")
    return pairs


def _pair_from_record(rec: Any, where: str) -> PromptPair:
    if not isinstance(rec, dict):
        raise PromptFileError(f"{where}: expected a JSON object with keys id, a, b; got {type(rec).__name__}")
    for key in ("id", "a", "b"):
        if key not in rec:
            raise PromptFileError(f"{where}: missing key {key!r} (each line needs id, a and b)")
        val = rec[key]
        if not isinstance(val, str):
            raise PromptFileError(f"{where}: {key!r} must be a string, got {type(val).__name__}")
        if not val.strip():
            raise PromptFileError(f"{where}: {key!r} is empty")
    pid, a, b = rec["id"].strip(), rec["a"].strip(), rec["b"].strip()
    if not _ID_RE.match(pid):
        raise PromptFileError(
            f"{where}: id {pid!r} must start with a letter or digit and use only letters, digits, '_', '.', '-'"
        )
    if a == b:
        raise PromptFileError(f"{where}: 'a' and 'b' are identical for id {pid!r}")
    return PromptPair(pid, a, b)


def validate_pairs(pairs: Sequence[PromptPair], source: str = "<pairs>") -> None:
    """The checks of `load_pairs` on in-memory pairs (`source` names them in errors, item index as line)."""
    seen: dict[str, int] = {}
    for i, p in enumerate(pairs, start=1):
        where = f"{source}:{i}"
        pair = _pair_from_record({"id": p.id, "a": p.a, "b": p.b}, where)
        if pair.id in seen:
            raise PromptFileError(f"{where}: duplicate id {pair.id!r} (first used at item {seen[pair.id]})")
        seen[pair.id] = i
    if not pairs:
        raise PromptFileError(f"{source}: no prompt pairs")


def check_control(pairs: Sequence[PromptPair], control: Sequence[PromptPair]) -> None:
    """Raise PromptFileError unless `control` has exactly the ids of `pairs` and the same A for each."""
    pa = {p.id: p.a for p in pairs}
    ca = {p.id: p.a for p in control}
    missing, extra = sorted(set(pa) - set(ca)), sorted(set(ca) - set(pa))
    if missing or extra:
        raise PromptFileError(
            f"control ids differ from pair ids: missing from control {missing[:10]}, not in pairs {extra[:10]}"
        )
    differ = [i for i in pa if pa[i] != ca[i]]
    if differ:
        raise PromptFileError(f"control 'a' differs from the pair 'a' for ids {differ[:10]}")


def write_pairs(pairs: Sequence[PromptPair], path: str | Path) -> Path:
    """Validate and write pairs as JSON lines (atomically: a crash leaves no half-written file)."""
    path = Path(path)
    validate_pairs(pairs, str(path))
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for p in pairs:
                f.write(json.dumps({"id": p.id, "a": p.a, "b": p.b}, ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# editing instructions (evaluate)


def load_edit_instructions(path: str | Path | None = None) -> list[str]:
    """Albedo editing instructions for `evaluate generate` (default: the shipped file).

    The file is either {"doc": str, "instructions": [str, ...]} or a bare JSON list of strings.
    Raises PromptFileError for an empty list, a non-string or empty entry, or a repeated entry.
    """
    path = Path(path) if path is not None else default_edit_instructions_path()
    if not path.is_file():
        raise FileNotFoundError(f"edit instruction file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise PromptFileError(f"{path}: not valid JSON ({e})") from None
    items = data.get("instructions") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise PromptFileError(f"{path}: expected a non-empty list of instructions (or {{'instructions': [...]}})")
    out: list[str] = []
    for i, s in enumerate(items):
        if not isinstance(s, str) or not s.strip():
            raise PromptFileError(f"{path}: instruction {i} must be a non-empty string")
        if s.strip() in out:
            raise PromptFileError(f"{path}: instruction {i} repeats an earlier one")
        out.append(s.strip())
    return out


# ----------------------------------------------------------------------------------------------
# generation from scene specs
#
# A = framing + scene description + the lighting's own description + a lighting-effects clause.
# B = albedo framing + the same scene description; it never carries the lighting phrase.
# Each A template lists paraphrases that keep its lighting words (only framing/order change), so a
# control B built from them moves no lighting content. The scene text in a control additionally
# gets lighting-neutral synonyms (grey/gray, sphere/ball, ...).

_A_TEMPLATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "A photograph of {scene}, {light}, with natural shadows, shading and reflections.",
        (
            "A photo of {scene}, {light}, with natural shading, shadows and reflections.",
            "{Scene}, {light}, with natural shadows, shading and reflections, captured in a photograph.",
        ),
    ),
    (
        "A realistic photo of {scene}, {light}, showing cast shadows, soft shading and specular highlights "
        "as a camera records them.",
        (
            "A realistic photograph of {scene}, {light}, showing soft shading, cast shadows and specular "
            "highlights as recorded by a camera.",
            "{Scene}, {light}, in a realistic photo that shows cast shadows, soft shading and specular "
            "highlights as a camera records them.",
        ),
    ),
    (
        "A rendered photograph showing {scene}, {light}, with physically accurate lighting, shadows and reflections.",
        (
            "A rendered photo that shows {scene}, {light}, with physically correct lighting, shadows and reflections.",
            "{Scene}, {light}, shown in a rendered photograph with physically accurate lighting, shadows and "
            "reflections.",
        ),
    ),
    (
        "A camera photo of {scene}, {light}, the light and shadow falling naturally, with visible highlights "
        "and reflections, in sharp focus.",
        (
            "A photograph taken with a camera of {scene}, {light}, the light and shadow falling naturally, "
            "with visible highlights and reflections, sharply focused.",
            "{Scene}, {light}, photographed with a camera in sharp focus, the light and shadow falling "
            "naturally, with visible highlights and reflections.",
        ),
    ),
    (
        "A photograph of {scene}, {light}. Shadows, shading and reflections appear as they would in a real photo.",
        (
            "A photo of {scene}, {light}. Shading, shadows and reflections look as they would in a real photograph.",
            "{Scene}, {light}, photographed. Shadows, shading and reflections appear as they would in a real photo.",
        ),
    ),
)

_B_TEMPLATES: tuple[str, ...] = (
    "An albedo image of {scene}: flat, unlit surface colour only, with no shadows, no highlights, "
    "no reflections and no shading.",
    "The albedo map of {scene}, showing only the base colour of each surface, completely flat, without "
    "lighting, shadows, highlights or reflections.",
    "A flat surface-colour (albedo) image of {scene}, every object in its own base colour only, free of "
    "shading, shadows, highlights and reflections.",
    "The surface colour alone of {scene}, as a flat albedo map, with no shading, no shadows, no highlights, "
    "no reflections and no lighting at all.",
    "An unlit albedo rendering of {scene}, with each surface shown in its plain base colour, evenly flat, "
    "with no shadows, shading, highlights or reflections.",
)

# Appended only to even out word counts (long lighting phrases make A longer than B), so that prompt
# length alone cannot separate A from B. B fillers say nothing but "albedo"; A fillers say nothing
# about a particular light, and each comes with its paraphrase for the control.
_B_FILLERS: tuple[str, ...] = (
    "Every surface keeps its own base colour from edge to edge.",
    "There is no light direction and no darkening anywhere.",
    "The image shows reflectance only, like a flat colour map.",
    "Brightness depends only on surface colour, never on shape or position.",
    "No part of any object is brighter or darker than its own colour.",
)
_A_FILLERS: tuple[tuple[str, str], ...] = (
    ("The picture has the look of a real camera photograph.", "The image looks like a real photograph taken with a camera."),
    ("Light and shade vary naturally across every surface.", "Across every surface, light and shade vary naturally."),
    ("The exposure and contrast are natural.", "The contrast and exposure look natural."),
    ("Fine detail is visible in the highlights and shadows.", "In the shadows and highlights, fine detail is visible."),
    ("The photo is sharp, with true-to-life tones.", "The photograph is sharp, with tones true to life."),
)
_BALANCE = (0.8, 1.25)  # target range of words(B) / words(A) (and control / A)

# Lighting-neutral synonyms for the scene text of a control prompt; one regex pass so none chains.
_SYNONYMS = {
    "grey": "gray", "gray": "grey", "colour": "color", "coloured": "colored", "color": "colour",
    "colored": "coloured", "sphere": "ball", "spheres": "balls", "standing": "placed", "lying": "resting",
    "sitting": "resting", "next to": "beside", "beside": "next to", "table top": "tabletop",
    "tabletop": "table top", "several": "a few", "checkered": "chequered", "wooden": "wood",
}
_SYN_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")\b")


@dataclass(frozen=True)
class _SceneLighting:
    scene_id: str
    lighting: str
    scene_text: str
    light_text: str
    pair_id: str


@dataclass(frozen=True)
class _Built:
    pair: PromptPair
    control_b: str


def _clean_phrase(text: str) -> str:
    """Strip whitespace and final punctuation; lower-case a capitalised first word (not an acronym)."""
    t = " ".join(text.split()).rstrip(" .;,")
    if len(t) >= 2 and t[0].isupper() and not t[1].isupper():
        t = t[0].lower() + t[1:]
    return t


# A lighting description may be a clause ("lit by a low sun ...") or a bare noun phrase ("soft overcast
# skylight"); the latter reads as a list item after the scene unless it gets a preposition.
_LIGHT_LEADS = frozenset(
    "lit illuminated lighted under in at beneath below with by from during bathed against inside on "
    "seen shot photographed casting throwing lighting".split()
)


def _light_clause(text: str) -> str:
    first = text.split(" ", 1)[0].lower()
    if first in _LIGHT_LEADS or first.endswith(("lit", "ed")):
        return text
    return "under " + text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _scene_items(scenes: str | Path | Iterable[str | Path | Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(source name, spec) for a folder of *.json, one file, or an iterable of files / dicts."""
    if isinstance(scenes, (str, Path)):
        p = Path(scenes)
        if p.is_dir():
            files = sorted(p.glob("*.json"))
            if not files:
                raise PromptFileError(f"{p}: no scene files (*.json) in this folder")
            items: list[str | Path | Mapping[str, Any]] = list(files)
        elif p.is_file():
            items = [p]
        else:
            raise FileNotFoundError(f"scene folder or file not found: {p}")
    else:
        items = list(scenes)
        if not items:
            raise PromptFileError("no scenes given")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            out.append((f"<scene {i}>", item))
            continue
        path = Path(item)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"scene file not found: {path}") from None
        except ValueError as e:
            raise PromptFileError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(spec, dict):
            raise PromptFileError(f"{path}: a scene file must hold one JSON object")
        out.append((str(path), spec))
    return out


def _nonempty_str(spec: Mapping[str, Any], key: str, where: str) -> str:
    val = spec.get(key)
    if not isinstance(val, str) or not val.strip():
        raise PromptFileError(f"{where}: needs a non-empty string {key!r}")
    return val


def _scene_lightings(scenes, lighting: str) -> list[_SceneLighting]:
    if lighting not in ("all", "first"):
        raise ValueError(f"lighting must be 'all' or 'first', got {lighting!r}")
    out: list[_SceneLighting] = []
    seen: dict[str, str] = {}
    for src, spec in _scene_items(scenes):
        sid = _nonempty_str(spec, "id", src).strip()
        if not _ID_RE.match(sid):
            raise PromptFileError(f"{src}: scene id {sid!r} must use only letters, digits, '_', '.', '-'")
        if sid in seen:
            raise PromptFileError(f"{src}: scene id {sid!r} is also used by {seen[sid]}")
        seen[sid] = src
        scene_text = _clean_phrase(_nonempty_str(spec, "description", src))
        lights = spec.get("lightings")
        if not isinstance(lights, list) or not lights:
            raise PromptFileError(f"{src}: scene {sid!r} needs a non-empty list 'lightings'")
        names: set[str] = set()
        for j, lt in enumerate(lights):
            where = f"{src}: lightings[{j}]"
            if not isinstance(lt, Mapping):
                raise PromptFileError(f"{where} must be an object with 'name' and 'description'")
            name = _nonempty_str(lt, "name", where).strip()
            if not _ID_RE.match(name) or "__" in name:
                raise PromptFileError(f"{where}: lighting name {name!r} must be snake_case without '__'")
            if name in names:
                raise PromptFileError(f"{where}: lighting name {name!r} repeats in scene {sid!r}")
            names.add(name)
            light_text = _light_clause(_clean_phrase(_nonempty_str(lt, "description", where)))
            pid = sid if lighting == "first" else f"{sid}__{name}"
            out.append(_SceneLighting(sid, name, scene_text, light_text, pid))
            if lighting == "first":
                break
    return out


def _build(item: _SceneLighting, seed: int) -> _Built:
    # Seeded per pair id (str seeds hash with SHA-512, independent of PYTHONHASHSEED): a pair keeps
    # its wording when other scenes are added to or removed from the set.
    rng = random.Random(f"ray-plantain/prompts/{seed}/{item.pair_id}")
    a_tpl, ctrl_tpls = _A_TEMPLATES[rng.randrange(len(_A_TEMPLATES))]
    b_tpl = _B_TEMPLATES[rng.randrange(len(_B_TEMPLATES))]
    c_tpl = ctrl_tpls[rng.randrange(len(ctrl_tpls))]
    b_fill = rng.sample(_B_FILLERS, len(_B_FILLERS))
    a_fill = rng.sample(_A_FILLERS, len(_A_FILLERS))

    scene, light = item.scene_text, item.light_text
    a = a_tpl.format(scene=scene, Scene=_cap(scene), light=light)
    b = b_tpl.format(scene=scene, Scene=_cap(scene))
    lo, hi = _BALANCE
    a_extra: list[tuple[str, str]] = []
    while word_count(b) < lo * word_count(a) and b_fill:
        b += " " + b_fill.pop()
    while word_count(b) > hi * word_count(a) and a_fill:
        pair = a_fill.pop()
        a += " " + pair[0]
        a_extra.append(pair)

    ctrl_scene = _SYN_RE.sub(lambda m: _SYNONYMS[m.group(1)], scene)
    c = c_tpl.format(scene=ctrl_scene, Scene=_cap(ctrl_scene), light=light)
    c += "".join(" " + para for _, para in a_extra)
    return _Built(PromptPair(item.pair_id, a, b), c)


def _generate(scenes, lighting: str, seed: int) -> list[_Built]:
    return [_build(it, int(seed)) for it in _scene_lightings(scenes, lighting)]


def generate_pairs(
    scenes: str | Path | Iterable[str | Path | Mapping[str, Any]],
    out_path: str | Path | None,
    lighting: str = "all",
    seed: int = 0,
) -> list[PromptPair]:
    """Write A/B pairs for a scene set and return them.

    `scenes`: a folder of scene specs (*.json, read in sorted order), one file, or an iterable of files or
    already-loaded spec dicts; each needs `id`, `description` and `lightings` [{name, description}, ...].
    `lighting="all"` gives one pair per scene x lighting with id `<scene>__<lighting>`; `"first"` one pair
    per scene from its first lighting, with the scene id as pair id. Wording (one of several A and B
    templates) is drawn from `seed` and the pair id, so the same inputs and seed give the same file.
    `out_path=None` returns the pairs without writing.
    """
    pairs = [b.pair for b in _generate(scenes, lighting, seed)]
    if out_path is not None:
        write_pairs(pairs, out_path)
    else:
        validate_pairs(pairs)
    return pairs


def generate_control(
    scenes: str | Path | Iterable[str | Path | Mapping[str, Any]],
    out_path: str | Path | None,
    lighting: str = "all",
    seed: int = 0,
) -> list[PromptPair]:
    """The lexical control for `generate_pairs` with the same arguments: same ids and A, B a paraphrase of A.

    The paraphrase keeps the lighting phrase verbatim and the lighting-effects clause's words, and only
    rewords the framing, reorders it, and swaps lighting-neutral synonyms in the scene text.
    """
    pairs = [PromptPair(b.pair.id, b.pair.a, b.control_b) for b in _generate(scenes, lighting, seed)]
    if out_path is not None:
        write_pairs(pairs, out_path)
    else:
        validate_pairs(pairs)
    return pairs


# ----------------------------------------------------------------------------------------------
# CLI (wired by the lead as `python -m probe prompts ...`; also `python -m probe.prompts ...`)


def add_prompts_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `prompts` subcommand's arguments to `parser`."""
    parser.add_argument("--scenes", type=Path, default=None,
                        help="folder of scene specs (*.json) or one scene file (default: the shipped scenes/)")
    parser.add_argument("--out", type=Path, required=True, help="pair file to write (JSON lines: id, a, b)")
    parser.add_argument("--control", type=Path, default=None,
                        help="also write the lexical control (same ids and A; B a paraphrase of A) here")
    parser.add_argument("--seed", type=int, default=0, help="picks the wording templates (default 0)")
    parser.add_argument("--lighting", choices=("all", "first"), default="all",
                        help="one pair per scene x lighting (all, ids <scene>__<lighting>) or per scene (first)")
    return parser


def main_prompts(args: argparse.Namespace) -> int:
    """Run the `prompts` subcommand from parsed arguments; returns the exit code."""
    scenes = args.scenes if args.scenes is not None else data_dir("scenes")
    pairs = generate_pairs(scenes, args.out, lighting=args.lighting, seed=args.seed)
    print(f"wrote {len(pairs)} pairs to {args.out} (scenes: {scenes}, lighting={args.lighting}, seed={args.seed})")
    if args.control is not None:
        generate_control(scenes, args.control, lighting=args.lighting, seed=args.seed)
        print(f"wrote {len(pairs)} control pairs to {args.control}")
    return 0


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="python -m probe.prompts", description=__doc__.splitlines()[0])
    raise SystemExit(main_prompts(add_prompts_arguments(_p).parse_args()))

"""Prompt pair files for the probe: load, validate, and generate them from scene specs or from a pair file.

    from probe.design.prompts import load_pairs, load_control, default_pairs_path, shipped_control_path
    pairs = load_pairs(default_pairs_path())      # 25 PromptPair(id, a, b): A = lit photo, B = albedo
    name, control = load_control(shipped_control_path("vocabulary"))   # same ids and A; B = control prompt
    check_control(pairs, control)

    # any scene set, e.g. the output of `python -m render --generate N`: one pair per scene x lighting
    generate_pairs("scenes_dir/", "pairs.jsonl", lighting="all", seed=0)
    generate_control("scenes_dir/", "control.jsonl", lighting="all", seed=0)
    # the lexical controls of any pair file (the shipped vocabulary.jsonl and shuffled.jsonl are made this way)
    generate_vocabulary("prompts/pairs.jsonl", "prompts/vocabulary.jsonl")
    generate_shuffled("prompts/pairs.jsonl", "prompts/shuffled.jsonl")

    python -m probe prompts --scenes DIR --out pairs.jsonl --control control.jsonl --vocabulary vocabulary.jsonl
    python -m probe prompts --from-pairs prompts/pairs.jsonl --vocabulary prompts/vocabulary.jsonl \
        --shuffled prompts/shuffled.jsonl

A pair file is JSON lines, one object per line: {"id": str, "a": str, "b": str}. A control file has the
same ids and `a` as its pair file, `b` the control prompt, and names its control set on every line:
{"id", "a", "b", "control": "vocabulary"} (a control file without the key, like the shipped
control.jsonl, is the paraphrase set). Shipped control sets (`SHIPPED_CONTROLS`):

- `paraphrase` (prompts/control.jsonl): B is a lighting-neutral paraphrase of A (hand-written for
  the shipped pairs; `generate_control` for scene sets).
- `vocabulary` (prompts/vocabulary.jsonl, `generate_vocabulary`): B's own words turned to mean a lit
  photograph, with none of A's lighting clause: "Not " before B's framing, B's negations turned ("no"
  dropped, "without"/"free of" -> "with", "only" -> "not only", "never" -> "also"). Every content word
  of B, only "not", "with" and "also" added, length-matched to B within VOCAB_TOKEN_TOLERANCE tokens.
- `shuffled` (prompts/shuffled.jsonl, `generate_shuffled`): B's words in a seeded random order,
  punctuation in place: the same bag of words, no syntax; within VOCAB_TOKEN_TOLERANCE tokens of B.

Tokens are counted by `probe.design.tokens` (the pipeline's tokenizer when given, else a documented
stand-in for Qwen3's); `control_lexicon` measures a set's token difference to B and word overlap.

Blank lines are ignored and other keys are ignored; everything else wrong is an error naming the file
and the 1-based line. No torch here. The `probe prompts` command line is probe.jobs.prompts.
"""
from __future__ import annotations

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
    "default_vocabulary_path",
    "shipped_control_path",
    "SHIPPED_CONTROLS",
    "PARAPHRASE",
    "VOCABULARY",
    "load_control",
    "write_control",
    "vocabulary_control",
    "generate_vocabulary",
    "SHUFFLED",
    "shuffled_control",
    "generate_shuffled",
    "LEXICAL_CONTROLS",
    "control_lexicon",
    "content_words",
    "VOCAB_TOKEN_TOLERANCE",
    "resolve_control_sets",
    "default_edit_instructions_path",
    "load_edit_instructions",
    "generate_pairs",
    "generate_control",
    "word_count",
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
    """The shipped paraphrase control: same ids and A as `pairs.jsonl`, B a lighting-neutral paraphrase of A."""
    return data_dir("prompts") / "control.jsonl"


PARAPHRASE = "paraphrase"
VOCABULARY = "vocabulary"
SHUFFLED = "shuffled"
# Control sets shipped in prompts/, by name (the name becomes part of array and column names).
SHIPPED_CONTROLS = {PARAPHRASE: "control.jsonl", VOCABULARY: "vocabulary.jsonl", SHUFFLED: "shuffled.jsonl"}


def default_vocabulary_path() -> Path:
    """The shipped vocabulary control: same ids and A as `pairs.jsonl`; B the lit photograph in B's words."""
    return data_dir("prompts") / SHIPPED_CONTROLS[VOCABULARY]


def shipped_control_path(name: str) -> Path:
    """Path of a shipped control set by name; PromptFileError for an unknown name."""
    if name not in SHIPPED_CONTROLS:
        raise PromptFileError(f"unknown control set {name!r}: the shipped control sets are "
                              f"{', '.join(SHIPPED_CONTROLS)}; give NAME=PATH for a control file of your own")
    return data_dir("prompts") / SHIPPED_CONTROLS[name]


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


def write_pairs(pairs: Sequence[PromptPair], path: str | Path, control: str | None = None) -> Path:
    """Validate and write pairs as JSON lines (atomically: a crash leaves no half-written file); with
    `control`, every line also names its control set ({"id", "a", "b", "control": NAME})."""
    path = Path(path)
    validate_pairs(pairs, str(path))
    if control is not None:
        _check_set_name(control, str(path))
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for p in pairs:
                rec = {"id": p.id, "a": p.a, "b": p.b}
                if control is not None:
                    rec["control"] = control
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def write_control(pairs: Sequence[PromptPair], path: str | Path, name: str) -> Path:
    """Write a control file whose lines name their control set `name`."""
    return write_pairs(pairs, path, control=name)


_SET_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _check_set_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _SET_NAME_RE.match(name) or name == "main":
        raise PromptFileError(f"{where}: control set name {name!r} must be 1-40 lower-case letters, digits or '_', "
                              f"starting with a letter (and not 'main'); it becomes part of column names (t_vs_NAME)")
    return name


def load_control(path: str | Path) -> tuple[str | None, list[PromptPair]]:
    """Read a control file: (the set name its lines give in their `control` key, or None; its pairs).

    Every line must give the same name, or none does (PromptFileError otherwise)."""
    path = Path(path)
    pairs = load_pairs(path)
    names: dict[str | None, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if raw.strip():
                names.setdefault(json.loads(raw).get("control"), lineno)
    if len(names) > 1:
        shown = ", ".join(f"{k!r} (line {v})" for k, v in names.items())
        raise PromptFileError(f"{path}: lines name different control sets: {shown}; one file holds one set")
    name = next(iter(names))
    if name is not None:
        _check_set_name(name, f"{path}:{names[name]}")
    return name, pairs


# ----------------------------------------------------------------------------------------------
# editing instructions (evaluate)


def load_edit_instructions(path: str | Path | None = None, key: str = "instructions") -> list[str]:
    """Albedo editing instructions for `evaluate generate` (default: the shipped file).

    The file is either {"doc": str, "instructions": [str, ...], ...} or a bare JSON list of strings (the albedo
    instructions). `key` picks another list of the same file: "keep_photo" holds the keep-the-photograph
    instructions the known-answer control model (`known-photo`) is trained with (see
    `load_keep_photo_instructions`); `evaluate generate` always reads "instructions".
    Raises PromptFileError for an empty list, a non-string or empty entry, or a repeated entry.
    """
    path = Path(path) if path is not None else default_edit_instructions_path()
    if not path.is_file():
        raise FileNotFoundError(f"edit instruction file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise PromptFileError(f"{path}: not valid JSON ({e})") from None
    items = data.get(key) if isinstance(data, dict) else (data if key == "instructions" else None)
    if not isinstance(items, list) or not items:
        raise PromptFileError(f"{path}: expected a non-empty list of instructions (or {{'{key}': [...]}})")
    out: list[str] = []
    for i, s in enumerate(items):
        if not isinstance(s, str) or not s.strip():
            raise PromptFileError(f"{path}: instruction {i} must be a non-empty string")
        if s.strip() in out:
            raise PromptFileError(f"{path}: instruction {i} repeats an earlier one")
        out.append(s.strip())
    return out


def load_keep_photo_instructions(path: str | Path | None = None) -> list[str]:
    """The keep-the-photograph instructions of the shipped file (`keep_photo`): the text the known-answer control
    `known-photo` was trained with, asking for the photograph unchanged (lighting, shadows and reflections kept)."""
    return load_edit_instructions(path, key="keep_photo")


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
    """The paraphrase control for `generate_pairs` with the same arguments: same ids and A, B a paraphrase of A
    (written with `"control": "paraphrase"` on every line).

    The paraphrase keeps the lighting phrase verbatim and the lighting-effects clause's words, and only
    rewords the framing, reorders it, and swaps lighting-neutral synonyms in the scene text.
    """
    pairs = [PromptPair(b.pair.id, b.pair.a, b.control_b) for b in _generate(scenes, lighting, seed)]
    if out_path is not None:
        write_control(pairs, out_path, PARAPHRASE)
    else:
        validate_pairs(pairs)
    return pairs


# ----------------------------------------------------------------------------------------------
# lexical controls: B's words meaning a lit photograph (vocabulary), and B's words without syntax (shuffled)
#
# A and B of a pair share the scene text (the longest run of words they have in common): B = frame_b + scene +
# tail_b. The vocabulary control keeps every word of B except its negations and says the opposite of B:
#
#     "Not " + frame_b + scene + tail_b with  no -> (dropped)   without / free of -> with   only -> not only
#                                             never -> also
#
# e.g. B "An albedo image of a red cube on a grey table, showing only the flat surface colour of each object, with
# no shadows, no highlights and no shading." -> V "Not an albedo image of a red cube on a grey table, showing not
# only the flat surface colour of each object, with shadows, highlights and shading." Every content word of B is
# there (CONTENT_STOP lists what is not a content word), no word of A's lighting clause is, and V is length-matched
# to B within VOCAB_TOKEN_TOLERANCE tokens: a dropped "no" of a list may be written "with" instead ("with shadows,
# with highlights"), and a "not" before "only" may go, until |tokens(V) - tokens(B)| is smallest.
# The shuffled control is B's words in a seeded random order (punctuation stays where it was): the same bag of words,
# no syntax.

VOCAB_TOKEN_TOLERANCE = 2          # |tokens(control) - tokens(B)| of every lexical control pair
CONTENT_STOP = frozenset(
    "a an the of on in at to by from with without and or but no not nor only also never free is are be as into onto "
    "across over under along behind near for any each every all both its their his her it this that these those "
    "there than so".split())
_MIN_SCENE_WORDS = 3
_WORD = re.compile(r"[A-Za-z0-9]+(?:['\-][A-Za-z0-9]+)*")


def content_words(text: str) -> list[str]:
    """The content words of a prompt, lower case, in order (CONTENT_STOP left out)."""
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in CONTENT_STOP]


def _norm_word(w: str) -> str:
    return re.sub(r"[^\w'-]", "", w.lower())


def _shared_run(a: str, b: str) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Character spans in a and in b of their longest common run of words (case and punctuation ignored)."""
    tok = re.compile(r"\S+")
    aw = [(m.start(), m.end(), _norm_word(m.group())) for m in tok.finditer(a)]
    bw = [(m.start(), m.end(), _norm_word(m.group())) for m in tok.finditer(b)]
    best = (0, 0, 0)
    prev = [0] * (len(bw) + 1)
    for i in range(1, len(aw) + 1):
        cur = [0] * (len(bw) + 1)
        for j in range(1, len(bw) + 1):
            if aw[i - 1][2] and aw[i - 1][2] == bw[j - 1][2]:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best[0]:
                    best = (cur[j], i - cur[j], j - cur[j])
        prev = cur
    n, i, j = best
    if n == 0:
        return (0, 0), (0, 0), 0
    return (aw[i][0], aw[i + n - 1][1]), (bw[j][0], bw[j + n - 1][1]), n


_EDIT = re.compile(r"\b(?:(?P<no>[Nn]o)|(?P<without>[Ww]ithout)|(?P<free>[Ff]ree of)|(?P<only>only)|(?P<never>never))\b")


def _tail_edits(tail: str) -> list[tuple[int, int, str, str]]:
    """(start, end, replacement, kind) of every edit of B's tail; kind tells the optional ones apart."""
    out = []
    for m in _EDIT.finditer(tail):
        kind = m.lastgroup
        if kind == "no":
            before = tail[:m.start()].rstrip()
            after_list = before.endswith((",", " and", " or"))
            cap = m.group()[0].isupper()
            out.append((m.start(), m.end(), "", "no-list" if after_list else ("no-cap" if cap else "no")))
        elif kind in ("without", "free"):
            out.append((m.start(), m.end(), "With" if m.group()[0].isupper() else "with", kind))
        elif kind == "only":
            out.append((m.start(), m.end(), "not only", "only"))
        else:
            out.append((m.start(), m.end(), "also", "never"))
    return out


def _apply(tail: str, edits, with_for_list: int, keep_only: int) -> str:
    """Apply the edits; the first `with_for_list` list negations become "with", the last `keep_only` "only"s stay."""
    out, pos = [], 0
    lists = [e for e in edits if e[3] == "no-list"][:with_for_list]
    onlys = [e for e in edits if e[3] == "only"]
    plain_only = set(map(id, onlys[len(onlys) - keep_only:])) if keep_only else set()
    for e in edits:
        start, end, rep, kind = e
        if e in lists:
            rep = "with"
        if id(e) in plain_only:
            rep = "only"
        out.append(tail[pos:start])
        out.append(rep)
        pos = end
    out.append(tail[pos:])
    text = "".join(out)
    text = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"[ \t]{2,}", " ", text))
    text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)   # "No part" -> "Part"
    return text


def _vocabulary_one(p: PromptPair, count) -> str:
    (_, a1), (b0, b1), n = _shared_run(p.a, p.b)
    if n < _MIN_SCENE_WORDS:
        raise PromptFileError(
            f"pair {p.id!r}: its A and B share no scene text (need at least {_MIN_SCENE_WORDS} words in a row in both), "
            f"so its vocabulary control cannot be derived; write that line by hand")
    frame_b = p.b[:b0].strip()
    head = (f"Not {frame_b[0].lower() + frame_b[1:] if not frame_b[1:2].isupper() else frame_b} " if frame_b
            else "Not ") + p.b[b0:b1]
    tail = p.b[b1:]
    edits = _tail_edits(tail)
    n_list = sum(e[3] == "no-list" for e in edits)
    n_only = sum(e[3] == "only" for e in edits)
    target = count(p.b)
    best = None
    for keep in range(0, n_only + 1):
        if keep and keep == n_only and n_only:
            continue          # at least one "only" stays negated ("not only"): the meaning must flip
        for w in range(0, n_list + 1):
            cand = " ".join((head + _apply(tail, edits, w, keep)).split())
            d = abs(count(cand) - target)
            if best is None or d < best[0]:
                best = (d, cand)
    d, v = best
    if d > VOCAB_TOKEN_TOLERANCE:
        raise PromptFileError(f"pair {p.id!r}: its vocabulary control is {d} tokens away from B ({count.name}); at most "
                              f"{VOCAB_TOKEN_TOLERANCE} are allowed: write that line by hand")
    return v


def vocabulary_control(pairs: Sequence[PromptPair], counter=None) -> list[PromptPair]:
    """The vocabulary control of each pair: (id, A, V), V = B's words meaning a lit photograph (see the section
    comment above), length-matched to B within VOCAB_TOKEN_TOLERANCE tokens of `counter`
    (`probe.design.tokens.token_counter`; default the stand-in). Deterministic. PromptFileError names a pair whose
    A and B share no scene text, or whose control cannot be length-matched."""
    from probe.design.tokens import token_counter

    count = counter or token_counter()
    validate_pairs(pairs, "<pairs>")
    out = [PromptPair(p.id, p.a, _vocabulary_one(p, count)) for p in pairs]
    validate_pairs(out, "<vocabulary control>")
    return out


def shuffled_control(pairs: Sequence[PromptPair], counter=None) -> list[PromptPair]:
    """The shuffled control of each pair: (id, A, S), S = B's words in a random order seeded by the pair id
    (punctuation stays in its place; every word keeps its spelling and case): the same bag of words as B, no syntax.
    Of 200 seeded orders the first whose token count is closest to B's (|difference| <= VOCAB_TOKEN_TOLERANCE)."""
    from probe.design.tokens import token_counter

    count = counter or token_counter()
    validate_pairs(pairs, "<pairs>")
    out = []
    for p in pairs:
        words = list(_WORD.finditer(p.b))
        rng = random.Random(f"ray-plantain/shuffled/{p.id}")
        target, best = count(p.b), None
        for _ in range(200):
            order = [w.group() for w in words]
            rng.shuffle(order)
            it = iter(order)
            s = _WORD.sub(lambda m: next(it), p.b)
            if s == p.b:
                continue
            d = abs(count(s) - target)
            if best is None or d < best[0]:
                best = (d, s)
            if d == 0:
                break
        if best is None or best[0] > VOCAB_TOKEN_TOLERANCE:
            raise PromptFileError(f"pair {p.id!r}: B's words cannot be shuffled into a different order within "
                                  f"{VOCAB_TOKEN_TOLERANCE} tokens of B ({count.name}); write that line by hand")
        out.append(PromptPair(p.id, p.a, best[1]))
    validate_pairs(out, "<shuffled control>")
    return out


LEXICAL_CONTROLS = {VOCABULARY: vocabulary_control, SHUFFLED: shuffled_control}


def generate_vocabulary(pairs: str | Path | Sequence[PromptPair] | None, out_path: str | Path | None,
                        counter=None) -> list[PromptPair]:
    """Write the vocabulary control of a pair file (default: the shipped pairs.jsonl) and return it.

    The lines name their set (`"control": "vocabulary"`). `out_path=None` returns without writing."""
    return _generate_lexical(VOCABULARY, pairs, out_path, counter)


def generate_shuffled(pairs: str | Path | Sequence[PromptPair] | None, out_path: str | Path | None,
                      counter=None) -> list[PromptPair]:
    """Write the shuffled control of a pair file (default: the shipped pairs.jsonl) and return it."""
    return _generate_lexical(SHUFFLED, pairs, out_path, counter)


def _generate_lexical(name: str, pairs, out_path, counter) -> list[PromptPair]:
    src = load_pairs(pairs) if pairs is None or isinstance(pairs, (str, Path)) else list(pairs)
    control = LEXICAL_CONTROLS[name](src, counter)
    if out_path is not None:
        write_control(control, out_path, name)
    return control


def control_lexicon(a: Sequence[str], b: Sequence[str], control: Sequence[str], counter=None,
                    lengths: Mapping[str, Sequence[int]] | None = None) -> dict:
    """How one control set relates to A and B in words and tokens (the report's lexical table).

    a, b, control: the prompts of the control set's pairs, aligned. Returns mean/sd/min/max of tokens(control) -
    tokens(B) by `counter` (default the stand-in) and, when `lengths` gives {"control": [...], "b": [...]} from the
    pipeline's own tokenizer, the same from those; the mean share of the control's content words that are B's
    words (`from_b`) and A's (`from_a`), and the mean share of B's content words the control keeps (`keeps_b`)."""
    from probe.design.tokens import token_counter

    count = counter or token_counter()
    import numpy as np

    def stats(d):
        d = np.asarray(d, dtype=float)
        return {"mean": round(float(d.mean()), 3), "sd": round(float(d.std(ddof=1)) if d.size > 1 else 0.0, 3),
                "min": int(d.min()), "max": int(d.max())}

    def share(words, pool):
        pool = set(pool)
        return sum(w in pool for w in words) / len(words) if words else float("nan")

    out = {"n_pairs": len(control), "counter": count.describe(),
           "tokens_minus_b": stats([count(c) - count(x) for c, x in zip(control, b)])}
    if lengths and lengths.get("control") and lengths.get("b"):
        out["tokens_minus_b_pipeline"] = stats([c - x for c, x in zip(lengths["control"], lengths["b"])])
    words = [content_words(c) for c in control]
    out["from_b"] = round(float(np.mean([share(w, _word_set(x)) for w, x in zip(words, b)])), 3)
    out["from_a"] = round(float(np.mean([share(w, _word_set(x)) for w, x in zip(words, a)])), 3)
    out["keeps_b"] = round(float(np.mean([share(content_words(x), _word_set(c)) for c, x in zip(control, b)])), 3)
    out["definition"] = ("tokens_minus_b: tokens(control) - tokens(B) per pair, the prompt's own tokens; from_b / from_a: "
                         "share of the control's content words that occur in B / in A; keeps_b: share of B's content "
                         "words that occur in the control (content words: CONTENT_STOP left out, lower case)")
    return out


def _word_set(text: str) -> set[str]:
    return {m.lower() for m in _WORD.findall(text)}


# ----------------------------------------------------------------------------------------------
# choosing control sets for a run (`probe run --control ...`)


def resolve_control_sets(specs: Sequence[str] | None, pairs: Sequence[PromptPair], shipped_pairs: bool
                         ) -> dict[str, tuple[list[PromptPair], str]]:
    """Control sets for a run, {name: (control pairs restricted to `pairs`' ids, where they came from)}.

    specs (the --control values): None (default: every shipped set with the shipped pairs; with any
    other pair file, the vocabulary and shuffled controls derived from it), ["none"], or any of: a shipped
    set's name (`paraphrase`, `vocabulary`, `shuffled`; with a pair file of your own, the lexical ones are
    derived from it),
    NAME=PATH (a control file of your own, named NAME), or PATH (a control file; its name from its
    lines' `control` key, else `paraphrase`). Every set is checked against the pairs (same ids and A).
    Raises PromptFileError with a one-paragraph message for an unknown name or a mismatched file.
    """
    specs = list(specs) if specs else []
    if [x.lower() for x in specs] == ["none"]:
        return {}
    if any(x.lower() == "none" for x in specs):
        raise PromptFileError("--control none cannot be combined with other control sets")
    default = not specs
    if default:
        specs = list(SHIPPED_CONTROLS) if shipped_pairs else list(LEXICAL_CONTROLS)
    out: dict[str, tuple[list[PromptPair], str]] = {}
    for spec in specs:
        try:
            name, control, source = _one_control_set(spec, pairs, shipped_pairs)
        except PromptFileError as e:
            if not default:
                raise
            raise PromptFileError(f"{e} (the vocabulary and shuffled controls are the default control sets for a pair "
                                  f"file of your own; give --control none, or --control NAME=PATH with a control file)"
                                  ) from None
        if name in out:
            raise PromptFileError(f"control set {name!r} is given twice (--control {spec})")
        ids = {p.id for p in pairs}
        control = [c for c in control if c.id in ids]
        if not control:
            raise PromptFileError(f"control set {name!r} ({source}) has none of the pair ids of this run; a control "
                                  f"file must use the ids of the pair file")
        check_control([p for p in pairs if p.id in {c.id for c in control}], control)
        out[name] = (control, source)
    return out


def _one_control_set(spec: str, pairs: Sequence[PromptPair], shipped_pairs: bool):
    if "=" in spec:
        name, path = spec.split("=", 1)
        _check_set_name(name.strip(), f"--control {spec}")
        file_name, control = load_control(path)
        if file_name is not None and file_name != name.strip():
            raise PromptFileError(f"--control {spec}: the file's lines name the set {file_name!r}, not {name!r}")
        return name.strip(), control, str(path)
    if spec in SHIPPED_CONTROLS:
        if spec in LEXICAL_CONTROLS and not shipped_pairs:
            return spec, LEXICAL_CONTROLS[spec](pairs), (f"derived from the pair file (probe.design.prompts."
                                                         f"{LEXICAL_CONTROLS[spec].__name__}, token stand-in)")
        path = shipped_control_path(spec)
        return spec, load_control(path)[1], str(path)
    if Path(spec).is_file():
        file_name, control = load_control(spec)
        return file_name or PARAPHRASE, control, spec
    raise PromptFileError(
        f"unknown control set {spec!r}: --control takes a shipped set's name ({', '.join(SHIPPED_CONTROLS)}), "
        f"NAME=PATH for a control file of your own, the path of a control file, or 'none'; "
        f"no file {spec!r} exists either")

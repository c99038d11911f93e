"""Fake render folders in the exact layout of `python -m render`, for tests that need no Blender."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from render.imageio import write_exr, write_png_encoded, write_png_srgb

H, W = 32, 40


def _write_sample(root: Path, sid: str, image, albedo, shading, normal_z, depth, mask, albedo_srgb: bool) -> dict:
    """One sample folder's files (C1 names) and the manifest keys that point at them."""
    h, w = mask.shape
    d = root / sid
    write_exr(d / "image_linear.exr", image)
    write_png_srgb(d / "image_srgb.png", image)
    write_exr(d / "albedo_linear.exr", albedo)
    if albedo_srgb:
        write_png_srgb(d / "albedo_srgb.png", albedo)
    write_exr(d / "shading_linear.exr", shading)
    write_exr(d / "residual_linear.exr", np.zeros_like(image))
    write_exr(d / "normal.exr", np.dstack([np.zeros((h, w)), np.zeros((h, w)), normal_z]), channels="XYZ")
    write_exr(d / "depth.exr", depth, channels="Z")
    write_png_encoded(d / "mask.png", mask.astype(np.float32))
    write_png_encoded(d / "object_index.png", mask.astype(np.float32) / 255.0)
    e = {"image": f"{sid}/image_linear.exr", "image_srgb": f"{sid}/image_srgb.png",
         "albedo": f"{sid}/albedo_linear.exr", "shading": f"{sid}/shading_linear.exr",
         "residual": f"{sid}/residual_linear.exr", "normal": f"{sid}/normal.exr", "depth": f"{sid}/depth.exr",
         "mask": f"{sid}/mask.png", "object_index": f"{sid}/object_index.png", "width": w, "height": h}
    if albedo_srgb:
        e["albedo_srgb"] = f"{sid}/albedo_srgb.png"
    return e


def write_synthetic_render(root: Path, scenes=("alpha", "beta"), lightings=("key", "rim"), h=H, w=W, seed=0) -> Path:
    """The render output layout (manifest.json + one folder per <scene>__<lighting>) with simple content:
    piecewise-constant albedo per scene, a smooth shading per lighting, an elliptic object mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    mask = ((yy - 0.4) ** 2 / 0.12 + (xx - 0.5) ** 2 / 0.2) < 1.0
    entries = []
    for si, scene in enumerate(scenes):
        albedo = np.empty((h, w, 3), np.float32)
        albedo[:] = rng.uniform(0.2, 0.9, 3)
        albedo[:, w // 2:] = rng.uniform(0.1, 0.8, 3)
        albedo[h // 2:, : w // 3] = rng.uniform(0.1, 0.9, 3)
        for li, light in enumerate(lightings):
            shading = (0.25 + 0.75 * (xx if li % 2 == 0 else 1 - xx) * (1 - 0.4 * yy))[..., None] * np.ones(3)
            shading = shading.astype(np.float32) * (1.0 + 0.5 * li)
            image = albedo * shading
            sid = f"{scene}__{light}"
            files = _write_sample(root, sid, image, albedo, shading, np.ones((h, w)),
                                  np.full((h, w), 3.0, np.float32), mask, albedo_srgb=False)
            entries.append({"id": sid, "scene": scene, "lighting": light, "description": f"{scene} under {light}",
                            **files})
    (root / "manifest.json").write_text(json.dumps({"format": "ray-plantain-render/1", "samples": entries}, indent=2))
    return root


def _same_luminance(rng, colour):
    """A random colour of another chromaticity with the Rec.709 luminance of `colour` (render --recolor-mode chroma)."""
    y = float(np.dot(colour, (0.2126, 0.7152, 0.0722)))
    while True:
        d = rng.uniform(0.05, 1.0, 3)
        c = d * y / float(np.dot(d, (0.2126, 0.7152, 0.0722)))
        if c.max() <= 1.0:
            return c


def write_synthetic_render_variants(root: Path, scenes=("alpha", "beta"), lightings=("key", "rim"), variants=1,
                                    h=H, w=W, seed=0, albedo_srgb=True, legacy_manifest=False,
                                    chroma_variants=0) -> Path:
    """The render layout of CONTRACTS.md C1 (`python -m render --recolor K`): for every scene its original
    (`<scene>__<lighting>`) and `variants` colour variants (`<scene>~c<k>__<lighting>`), each with
    albedo_srgb.png (unless `albedo_srgb=False`, as renders before it had) and manifest fields `variant`,
    `base_scene`. Variants share mask, shading, geometry with their original; only the albedo
    colours (and so the image) differ; lightings of one scene and variant share albedo exactly.
    legacy_manifest=True leaves out the `variant` / `base_scene` keys (a manifest written before them).
    chroma_variants=C adds variants ~c(K+1)..~c(K+C) whose region colours keep the original's luminance
    (recolor_mode "chroma"); the first K are "hsv" (recorded only when C > 0, as renders before modes had none)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    mask = ((yy - 0.4) ** 2 / 0.12 + (xx - 0.5) ** 2 / 0.2) < 1.0
    regions = [np.s_[:, :], np.s_[:, w // 2:], np.s_[h // 2:, : w // 3]]
    entries = []
    for scene in scenes:
        colours = None
        for k in range(variants + chroma_variants + 1):
            full = scene if k == 0 else f"{scene}~c{k}"
            albedo = np.zeros((h, w, 3), np.float32)
            if k <= variants:
                drawn = [rng.uniform(0.1, 0.9, 3) for _ in regions]
                colours = drawn if k == 0 else colours
            else:
                drawn = [_same_luminance(rng, c) for c in colours]
            for r, c in zip(regions, drawn):
                albedo[r] = c
            albedo[~mask] = 0.0
            for li, light in enumerate(lightings):
                shading = (0.25 + 0.75 * (xx if li % 2 == 0 else 1 - xx) * (1 - 0.4 * yy))[..., None] * np.ones(3)
                shading = (shading * (1.0 + 0.5 * li) * mask[..., None]).astype(np.float32)
                image = albedo * shading
                sid = f"{full}__{light}"
                files = _write_sample(root, sid, image, albedo, shading, mask.astype(float),
                                      np.where(mask, 3.0, np.inf).astype(np.float32), mask, albedo_srgb)
                e = {"id": sid, "scene": full, "base_scene": scene, "variant": k, "lighting": light,
                     "description": f"{full} under {light}", "scene_description": full,
                     "lighting_description": f"under {light}", **files}
                if chroma_variants and k:
                    e["recolor_mode"] = "hsv" if k <= variants else "chroma"
                if legacy_manifest:
                    del e["base_scene"], e["variant"]
                entries.append(e)
    entries.sort(key=lambda e: e["id"])
    manifest = {"format": "ray-plantain-render/1", "samples": entries,
                "base_scenes": sorted(scenes), "scenes": sorted({e["scene"] for e in entries}),
                "recolor": {"variants": variants, "seed": seed, "range": "synthetic (tests/fakes.py)"} if variants
                else None}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def fake_probe_units(steps=(0, 3), groups=("double.0.img", "double.0.txt", "single.0", "single.1"), heads=4) -> list[str]:
    """Unit names in the probe's order (C2) for a tiny-klein-sized probe."""
    return [f"s{s:02d}/{g}/h{h:02d}" for s in steps for g in groups for h in range(heads)]


def write_fake_probe(root: Path, columns: dict, summary: dict | None = None, per_sample: dict | None = None) -> Path:
    """A probe run folder as CONTRACTS C3 describes it: units.csv from `columns` (name -> per-unit values;
    `unit` required; the other always-present columns are filled with neutral values when absent),
    summary.json, and per_sample.npz (image probes) when given."""
    import csv

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    units = list(columns["unit"])
    n = len(units)
    t = np.asarray(columns.get("t", np.zeros(n)), dtype=float)
    base = {"unit": units, "block": [u.rsplit("/", 1)[0] for u in units], "t": t, "d": t / 5, "p": np.full(n, 0.5),
            "q": np.full(n, 0.5), "p_fwer": np.where(np.abs(t) > 5, 0.01, 0.9),
            "fwer_significant": (np.abs(t) > 5).astype(int), "mean_a": np.ones(n), "mean_b": np.ones(n),
            "mean_diff": t / 10, "sd_diff": np.ones(n)}
    base.update(columns)
    cols = list(base)
    with open(root / "units.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(n):
            w.writerow([base[c][i] for c in cols])
    (root / "summary.json").write_text(json.dumps({"n_units": n, "fwer_alpha": 0.05, **(summary or {})}))
    if per_sample is not None:
        np.savez(root / "per_sample.npz", **per_sample)
    return root


def fake_image_captures(lighting, albedo, n_scenes=25, seed=0, noise=0.0, units=None, direction="a-b"):
    """An image probe's captures.npz contents (`probe.io.captures.Captures`) built without a model or a render: per
    base scene `s<k>` two colour versions (original, `~c1`) under two lightings (`hard` = side A of the lighting
    contrast, `soft`), every sample with its render and albedo image, and the sample-level pairs of the three
    contrasts as the image design makes them (lighting: hard vs soft per version; albedo: original vs ~c1 per
    lighting, the original as A).

    `lighting`, `albedo`: [n_scenes, U] per-scene changes of each unit (A minus B; a row of signs makes a change whose
    direction depends on the scene), or [U] for the same change in every scene. Each image's value is a scene level
    plus half the changes (+ for A, - for B) plus N(0, noise)."""
    from probe.io.captures import Captures, ControlSet, ImageValues

    rng = np.random.default_rng(seed)
    light = np.broadcast_to(np.asarray(lighting, dtype=float), (n_scenes, np.shape(lighting)[-1]))
    colour = np.broadcast_to(np.asarray(albedo, dtype=float), light.shape)
    n_units = light.shape[1]
    units = units or [f"s00/double.0.img/h{i:02d}" for i in range(n_units)]
    scenes = [f"s{k:02d}" for k in range(n_scenes)]
    keys, scene_ids, values = [], [], []
    for k, base in enumerate(scenes):
        level = rng.normal(0.0, 1.0, n_units)
        for v, full in enumerate((base, f"{base}~c1")):
            for light_name, sign in (("hard", 0.5), ("soft", -0.5)):
                value = level + sign * light[k] + (0.5 if v == 0 else -0.5) * colour[k]
                for kind, x in (("render", value), ("albedo", level - 2.0 + 0.3 * (v == 0))):
                    keys.append(f"{full}__{light_name}/{kind}")
                    scene_ids.append(base)
                    values.append(x + rng.normal(0.0, noise, n_units) if noise else x)
    values = np.asarray(values, dtype=np.float32)
    pos = {key: i for i, key in enumerate(keys)}
    pairs = {"render_vs_albedo": [], "lighting": [], "albedo": []}
    for base in scenes:
        for full in (base, f"{base}~c1"):
            for light_name in ("hard", "soft"):
                pairs["render_vs_albedo"].append((f"{full}__{light_name}/render", f"{full}__{light_name}/albedo"))
            pairs["lighting"].append((f"{full}__hard/render", f"{full}__soft/render"))
        for light_name in ("hard", "soft"):
            pairs["albedo"].append((f"{base}__{light_name}/render", f"{base}~c1__{light_name}/render"))
    sides = {}
    for name, ps in pairs.items():
        a = np.stack([np.mean([values[pos[x]] for x, _ in ps if x.startswith(f"{s}~") or x.startswith(f"{s}__")],
                              axis=0) for s in scenes])
        b = np.stack([np.mean([values[pos[y]] for x, y in ps if x.startswith(f"{s}~") or x.startswith(f"{s}__")],
                              axis=0) for s in scenes])
        sides[name] = (a.astype(np.float32), b.astype(np.float32), np.array(scenes))
    meta = {"stimuli": "images", "primary_contrast": "render_vs_albedo", "direction": direction,
            "contrasts": list(pairs), "image_design": {"pairs_over": "scenes", "clustered": False,
                                                       "n_base_scenes": n_scenes}}
    return Captures(a=sides["render_vs_albedo"][0], b=sides["render_vs_albedo"][1], units=np.array(units),
                    pair_ids=np.array(scenes), meta=meta,
                    contrasts={n: ControlSet(*sides[n]) for n in ("lighting", "albedo")},
                    images=ImageValues(values, np.array(keys), np.array(scene_ids)),
                    sample_pairs={n: (np.array([x for x, _ in ps]), np.array([y for _, y in ps]))
                                  for n, ps in pairs.items()})

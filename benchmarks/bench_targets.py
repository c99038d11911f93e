"""How far each known-answer task's own target drops light or colour, in pixels: the yardstick for what its network
can show. Per base scene of a render folder, for each target (the photograph, the albedo, the displayed shading,
the `light` task's shading averaged over the colour variants), its change between the two images of a pair over the
photograph's change (8-bit sRGB as trained, L2 over pixels): colour pairs (variant k vs the original, same lighting)
and lighting pairs (two lightings, same variant). Mean over each scene's pairs, then over scenes; the ratio of the
means is the pixel-space analogue of the change classes' gain ratio (probe/stats/change.py), whose margin is 0.5.

    python benchmarks/bench_targets.py --data runs/gen-s2-64

A target that drops colour entirely has colour/light 0 (the albedo's light/colour is 0 by construction).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from probe.klein.train import shading_targets
    from render.dataset import list_samples
    from render.imageio import read_exr, read_png_srgb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a render folder with colour variants (--recolor K)")
    args = ap.parse_args()
    root = Path(args.data)
    samples = list_samples(root)
    shading = [read_exr(root / s.meta["shading"])[..., :3].astype(np.float32) for s in samples]
    u8 = lambda x: np.round(np.asarray(x, np.float32) * 255.0) / 255.0   # as the training targets are stored
    targets = {"photo": [u8(read_png_srgb(s.image_srgb)) for s in samples],
               "albedo": [u8(read_png_srgb(s.albedo_srgb)) for s in samples],
               "shading": list(shading_targets("shading", samples, shading) / 255.0),
               "light": list(shading_targets("light", samples, shading) / 255.0)}
    photo = targets["photo"]
    index = {s.id: i for i, s in enumerate(samples)}
    pairs = {"colour": [], "lighting": []}
    for i, s in enumerate(samples):
        if s.variant:
            j = index.get(s.id.replace(f"~c{s.variant}", "", 1))
            if j is not None:
                pairs["colour"].append((s.base_scene, j, i))
    groups: dict = {}
    for i, s in enumerate(samples):
        groups.setdefault((s.base_scene, s.variant), []).append(i)
    for (b, _), idx in groups.items():
        pairs["lighting"] += [(b, i, j) for i, j in itertools.combinations(idx, 2)]
    print(f"{root}: {len(samples)} samples, {len({s.base_scene for s in samples})} base scenes; "
          f"{len(pairs['colour'])} colour pairs, {len(pairs['lighting'])} lighting pairs")
    print(f"{'target':8s} {'light gain':>10s} {'colour gain':>11s} {'colour/light':>12s} {'light/colour':>12s}   "
          "per scene: the smaller over the larger, median [10%, 90%]")
    for name, tgt in targets.items():
        gain = {}
        for kind, ps in pairs.items():
            per: dict = {}
            for b, i, j in ps:
                d_in = np.linalg.norm(photo[i] - photo[j])
                if d_in > 0:
                    per.setdefault(b, []).append(np.linalg.norm(tgt[i] - tgt[j]) / d_in)
            gain[kind] = {b: float(np.mean(v)) for b, v in per.items()}
        scenes = sorted(set(gain["colour"]) & set(gain["lighting"]))
        lg = np.array([gain["lighting"][b] for b in scenes])
        cg = np.array([gain["colour"][b] for b in scenes])
        with np.errstate(divide="ignore", invalid="ignore"):
            small = np.minimum(cg, lg) / np.maximum(cg, lg)       # 0: one factor dropped entirely; 1: neither
            q = np.quantile(small, [0.5, 0.1, 0.9])
            which = "colour/light" if cg.mean() <= lg.mean() else "light/colour"
            print(f"{name:8s} {lg.mean():10.3f} {cg.mean():11.3f} {cg.mean() / lg.mean():12.3f} "
                  f"{lg.mean() / cg.mean():12.3f}   {which} {q[0]:.3f} [{q[1]:.3f}, {q[2]:.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The image probe's luminance row: the units that follow the surfaces' mean albedo luminance (FWER-significant in
the `luminance` contrast, made of luminance-changing colour variants), counted beside the unit classes. numpy only.

    from probe.stats.luminance import luminance_row
    row = luminance_row(res)      # None when the run has no luminance contrast
    row["n_follow_luminance"], row["by_class"]["albedo-selective"]

An albedo contrast made of hsv variants changes the surfaces' brightness with their colour, so a unit that only
follows brightness can come out `albedo-selective`; with chroma variants (luminance kept) it cannot. The row says
how many units follow luminance and how many of each class do, so a reader sees how much of `albedo-selective`
brightness could explain.
"""
from __future__ import annotations

import numpy as np

__all__ = ["luminance_row", "LUMINANCE_DEFINITION"]

LUMINANCE_DEFINITION = ("units FWER-significant in the `luminance` contrast: original vs luminance-changing (hsv) colour "
                        "variant under the same lighting, A = the colour set with the higher mean albedo luminance, "
                        "pairs over base scenes as the other contrasts; `by_class`: how many of each class follow it")


def luminance_row(res) -> dict | None:
    """{"n_follow_luminance", "n_units", "by_class", "albedo_variants", "definition"}; None without the contrast."""
    if "luminance" not in getattr(res, "stats", {}):
        return None
    sig = np.asarray(res.stats["luminance"].null.significant, dtype=bool)
    t = np.asarray(res.stats["luminance"].unit.t, dtype=float)
    out = {"n_follow_luminance": int(sig.sum()), "n_positive": int((sig & (t > 0)).sum()),
           "n_negative": int((sig & (t < 0)).sum()), "n_units": int(sig.size), "definition": LUMINANCE_DEFINITION}
    cls = getattr(res, "classification", None)
    if cls is not None:
        classes = np.asarray(cls.classes).astype(str)
        out["by_class"] = {str(k): int((sig & (classes == k)).sum()) for k in dict.fromkeys(classes.tolist())}
        out["class_sizes"] = {str(k): int((classes == k).sum()) for k in dict.fromkeys(classes.tolist())}
    return out

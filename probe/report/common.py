"""What every report file shares: number and table formatting for markdown, and figures without pyplot
(a matplotlib Figure, Agg-rendered PNG written atomically). numpy + matplotlib; no torch.
"""
from __future__ import annotations

import math
from pathlib import Path

from render.imageio import atomic_path

__all__ = ["DPI", "MAX_SCATTER_POINTS", "finite", "fmt", "fmt_count", "fmt_ratio", "fmt_ci", "dig", "md_cell",
           "md_table", "new_figure", "save_figure", "fwer_threshold", "diverging"]


MAX_SCATTER_POINTS = 40_000   # beyond this a fixed random subset is drawn (all units still count)


DPI = 100


def finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt(x, digits: int = 2) -> str:
    return f"{float(x):.{digits}f}" if finite(x) else "n/a"


def fmt_count(n, total) -> str:
    n = int(n)
    return f"{n:,} ({100.0 * n / total:.1f}%)" if total else f"{n:,}"


def fmt_ratio(x) -> str:
    if not finite(x):
        return "n/a"
    x = float(x)
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×"


def fmt_ci(lo_hi, digits: int = 2) -> str:
    lo, hi = (float(v) for v in lo_hi)
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]" if finite(lo) and finite(hi) else ""


def dig(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return out


def new_figure(w: float, h: float):
    # Figure without pyplot: no global state, no backend switching, always Agg-rendered PNG
    from matplotlib.figure import Figure

    return Figure(figsize=(min(w, 16.0), min(h, 16.0)), layout="constrained")


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def fwer_threshold(nl) -> float | None:
    """|t| a unit must exceed for p_fwer <= alpha; None when no unit can (too few sign vectors)."""
    min_p = 1.0 / (nl.n_perm + (0 if nl.exact else 1))   # the identity counts among enumerated vectors
    return float(nl.fwer_t) if min_p <= nl.alpha and finite(nl.fwer_t) else None


def diverging():
    import matplotlib

    return matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")

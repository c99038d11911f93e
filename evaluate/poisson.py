"""Gradient-domain integration on a mask (the Poisson solve of the MIT benchmark's Retinex and Weiss baselines).

    from evaluate.poisson import gradients, PoissonSolver
    gy, gx = gradients(np.log(image))                  # MIT's get_gradients: backward differences, row/col 0 = 0
    solver = PoissonSolver(mask)                       # factorises once per mask ...
    log_r = solver.solve(t_y, t_x)                     # ... then one solve per target (thresholds of a grid)

The solution x (on the mask, 0 elsewhere) minimises, over neighbour pairs with both pixels in the mask,
    sum (x[i,j] - x[i-1,j] - t_y[i,j])^2 + (x[i,j] - x[i,j-1] - t_x[i,j])^2,
which is what the benchmark's poisson.solve minimises (Grosse et al. 2009). It is defined up to one
constant per connected mask region; a tiny ridge picks the minimum-norm one (zero mean in each region),
as an iterative solver started from zero does. Sparse direct solve (SuperLU), numpy/scipy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gradients", "PoissonSolver", "poisson_integrate"]


def gradients(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MIT's get_gradients: g_y[i] = a[i] - a[i-1] (row 0 is 0), g_x likewise along columns; any trailing axes."""
    a = np.asarray(a, dtype=np.float64)
    gy = np.zeros_like(a)
    gy[1:] = a[1:] - a[:-1]
    gx = np.zeros_like(a)
    gx[:, 1:] = a[:, 1:] - a[:, :-1]
    return gy, gx


class PoissonSolver:
    """The least-squares integration of target gradients on one mask, factorised once."""

    def __init__(self, mask: np.ndarray, ridge: float = 1e-9):
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        self.mask = np.asarray(mask, bool)
        h, w = self.mask.shape
        idx = -np.ones((h, w), dtype=np.int64)
        self.n = int(self.mask.sum())
        idx[self.mask] = np.arange(self.n)
        rows, cols, vals, self._pairs = [], [], [], []
        e = 0
        # horizontal pairs (i, j-1) -> (i, j) take t_x[i, j]; vertical pairs (i-1, j) -> (i, j) take t_y[i, j]
        for a_idx, b_idx, axis in ((idx[:, :-1], idx[:, 1:], "x"), (idx[:-1, :], idx[1:, :], "y")):
            ok = (a_idx >= 0) & (b_idx >= 0)
            k = int(ok.sum())
            r = np.arange(e, e + k)
            rows += [r, r]
            cols += [b_idx[ok], a_idx[ok]]
            vals += [np.ones(k), -np.ones(k)]
            self._pairs.append((axis, ok))
            e += k
        self.n_pairs = e
        self._lu = None
        if self.n and e:
            d = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(e, self.n))
            self._dt = d.T.tocsr()
            lap = (self._dt @ d + ridge * sp.identity(self.n, format="csr")).tocsc()
            self._lu = splu(lap, permc_spec="MMD_AT_PLUS_A")

    def solve(self, t_y: np.ndarray, t_x: np.ndarray) -> np.ndarray:
        """x [H, W] (0 off the mask) whose gradients best match t_y, t_x on pairs inside the mask."""
        x = np.zeros(self.mask.shape)
        if self._lu is None:
            return x   # no pixel, or isolated pixels: every constant is a solution, take 0
        t_y, t_x = np.asarray(t_y, np.float64), np.asarray(t_x, np.float64)
        rhs = np.concatenate([(t_x[:, 1:] if axis == "x" else t_y[1:, :])[ok] for axis, ok in self._pairs])
        x[self.mask] = self._lu.solve(self._dt @ rhs)
        return x


def poisson_integrate(t_y: np.ndarray, t_x: np.ndarray, mask: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """One solve: PoissonSolver(mask, ridge).solve(t_y, t_x)."""
    return PoissonSolver(mask, ridge).solve(t_y, t_x)

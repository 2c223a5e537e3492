"""Sparsity on each phase's counts instead of its share: a prototype outside the engine.

Not a test: ``python benchmarks/prototype_count_sparsity.py MAP N0 N [share|counts ...]``
fits the independent map ``MAP`` (a folder of ``../shared/data/independent``) with the defaults
stopped after ``N0`` iterations, then runs ``N`` more iterations of plain multiplicative updates
from that point (dense NumPy, λ = 0, the fit's own G, μ and ε, the H simplex) with

* ``share``: the engine's prior, Σ μ log(h + ε): a phase can trade its share against the scale
  of its spectrum (h → h/c, W → c·W) and gain −μ log c per pixel;
* ``counts``: Σ μ log(r_j h + ε), r_j the counts of a pure pixel of phase j over the map's mean
  pixel counts, which that trade leaves unchanged. H step: ε/r_j in place of ε; W step: the
  tangent of the (concave) term added to the denominator, a majoriser like the others.

It prints F, the KL part, the angles to the truth (matched), each phase's counts of a pure
pixel over the 99th percentile of the pixels' counts, and the abundance shares every 250
iterations. Figures: docs/validation.rst, "A phase that trades abundance for scale".
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))

INDEPENDENT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "independent"


def solve_simplex(c: np.ndarray, beta: np.ndarray, n_newton: int = 60) -> np.ndarray:
    """Rows h = c / (β + ν) with ν per row such that Σ h = 1 (safeguarded Newton)."""
    lo = -beta.min(axis=1) + 1e-300
    hi = c.sum(axis=1) - beta.min(axis=1) + 1.0
    nu = np.maximum(c.sum(axis=1) - beta.max(axis=1), lo + 1e-12)
    for _ in range(n_newton):
        x = c / (beta + nu[:, None])
        f = x.sum(axis=1) - 1.0
        df = -(x / (beta + nu[:, None])).sum(axis=1)
        lo = np.where(f > 0, nu, lo)
        hi = np.where(f < 0, nu, hi)
        step = nu - f / df
        nu = np.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
    h = c / (beta + nu[:, None])
    return h / h.sum(axis=1, keepdims=True)


class Problem:
    """The map's nonzero counts (scaled), the fit's G, priors and start, and the truth."""

    def __init__(self, name: str, n0: int) -> None:
        from validate_calibration import load_independent

        from esmpy_hs.nmf._updates import g_colsums

        s, k = load_independent(INDEPENDENT / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False,
                                  return_info=True, max_iter=n0)  # fmt: skip
        c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
        Y = s.data.reshape(-1, s.data.shape[-1])[:, c0:c1].astype(np.float64) / est.scale_
        self.k, (self.p, self.n) = k, Y.shape
        self.pix, self.ch = np.nonzero(Y)
        self.y = Y[self.pix, self.ch]
        self.sbar = Y.sum() / self.p  # mean pixel counts (scaled units)
        st = est.plan_.settings
        self.mu, self.eps = np.asarray(st.mu, dtype=np.float64), float(st.eps_reg)
        self.G = np.asarray(est.G_, dtype=np.float64)
        self.Gt1 = g_colsums(self.G, self.n, k)
        self.W0, self.H0 = est.W_ / est.scale_, est.H_.T.copy()  # H as pixels × k
        truth = np.load(INDEPENDENT / name / "truth.npz")
        self.T = np.asarray(truth["true_spectra"], dtype=np.float64).T[:, c0:c1]

    def model(self, D: np.ndarray, Ht: np.ndarray) -> np.ndarray:
        return (D[self.ch] * Ht[self.pix]).sum(axis=1)

    def by(self, index: np.ndarray, size: int, weights: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(index, weights=w, minlength=size) for w in weights.T], 1)

    def report(self, form: str, it: int, D: np.ndarray, Ht: np.ndarray, r: np.ndarray) -> None:
        from esmpy_hs.metrics import spectral_angle

        m = self.model(D, Ht)
        kl = float((self.y * np.log(self.y / m)).sum() - self.y.sum()
                   + (D.sum(axis=0) * Ht.sum(axis=0)).sum())  # fmt: skip
        pen = float((self.mu * np.log(Ht * r + self.eps)).sum())
        A = np.array([[spectral_angle(self.T[i], D[:, j]) for j in range(self.k)]
                      for i in range(self.k)])  # fmt: skip
        rows, cols = linear_sum_assignment(A)
        a = A[rows, cols]
        s_j = D.sum(axis=0)
        ratio = s_j / np.percentile(Ht @ s_j, 99)
        print(f"  {form:6s} it {it:5d} F {kl + pen:.2f} KL {kl:.2f} angles "
              f"{np.round(a, 2).tolist()} mean {a.mean():.2f} pure/p99 "
              f"{np.round(ratio, 2).tolist()} share {np.round(100 * Ht.mean(axis=0), 3).tolist()}",
              flush=True)  # fmt: skip

    def run(self, form: str, n_iter: int) -> None:
        from esmpy_hs.nmf._updates import compute_D, gt_times

        counts = form == "counts"
        W, Ht = self.W0.copy(), self.H0.copy()
        for it in range(n_iter + 1):
            D = compute_D(self.G, W, np.float64)
            r = D.sum(axis=0) / self.sbar if counts else np.ones(self.k)
            if it % 250 == 0 or it == n_iter:
                self.report(form, it, D, Ht, r)
            if it == n_iter:
                break
            # H step (λ = 0): the multiplicative numerator, the prior's tangent, the simplex
            R = self.y / self.model(D, Ht)
            c = Ht * self.by(self.pix, self.p, R[:, None] * D[self.ch])
            beta = D.sum(axis=0)[None] + self.mu[None] / (Ht + self.eps / r[None])
            Ht = solve_simplex(c, beta)
            # W step, with the tangent of Σ μ log(r_j h + ε) in W for the counts form
            R = self.y / self.model(D, Ht)
            num = W * gt_times(self.G, self.by(self.ch, self.n, R[:, None] * Ht[self.pix]))
            den = self.Gt1 * Ht.sum(axis=0)[None]
            if counts:
                t = (self.mu / self.sbar) * (Ht / (r[None] * Ht + self.eps)).sum(axis=0)
                den = den + self.Gt1 * t[None]
            ok = den > 0
            W = np.where(ok, np.maximum(num / np.where(ok, den, 1.0), 1e-12), W)


def main(argv: list[str]) -> None:
    name, n0, n_iter = argv[0], int(argv[1]), int(argv[2])
    prob = Problem(name, n0)
    print(f"{name}: start after {n0} iterations; μ {prob.mu.tolist()}, ε {prob.eps}, "
          f"mean pixel counts {prob.sbar:.3g} (scaled)", flush=True)  # fmt: skip
    for form in argv[3:] or ["share", "counts"]:
        t0 = time.perf_counter()
        prob.run(form, n_iter)
        print(f"  {form}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

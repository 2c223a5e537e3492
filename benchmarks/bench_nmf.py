"""Seconds per iteration of SmartNMF against scikit-learn's KL multiplicative-update NMF.

Not a test: run ``python benchmarks/bench_nmf.py`` and read the ratios, all measured in this run.

Data: a 128 × 128 map, 1980 channels, three phases (a matrix and two overlapping spherical
particles, as in the reference sample of ``shared/notes/validation.md``), Poisson counts at
≈ 290 and ≈ 18 counts per pixel, stored as a scipy CSR matrix (pixels × channels). G has 23
Gaussian peak columns and two smooth continuum columns (no dependence on ``esmpy_hs.physics``).

SmartNMF's seconds per iteration are the median of per-iteration time stamps (taken by the
callback hook) over one fit, the best of three fits after a warm-up fit, so initialisation and
compilation are excluded; scikit-learn's are the difference between runs of N and N0
iterations. Peak memory is tracemalloc's peak during a fit, compared with the size of the counts
stored as dense uint16.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np
import scipy.sparse as sp

from esmpy_hs.nmf import SmartNMF

N_CH = 1980
SHAPE = (128, 128)
K = 3
#: scikit-learn's seconds per iteration on this problem on an idle 2-core machine of this class
#: (figure given in the issue that set the targets)
SKLEARN_REFERENCE_S = 0.29


def make_G(n_channels: int = N_CH) -> np.ndarray:
    """23 Gaussian peaks (widths growing with energy) and two continuum columns."""
    e = 0.3 + 0.01 * np.arange(n_channels)  # keV
    centres = np.linspace(0.5, 17.5, 23)
    cols = []
    for c in centres:
        s = 0.03 + 0.004 * c
        g = np.exp(-0.5 * ((e - c) / s) ** 2)
        g += 0.15 * np.exp(-0.5 * ((e - 1.1 * c) / s) ** 2)  # a beta line
        cols.append(g / g.sum())
    cont1 = np.exp(-e / 4.0) * (1 - np.exp(-e / 0.8))
    cont2 = e * np.exp(-e / 2.0)
    cols += [cont1 / cont1.sum(), cont2 / cont2.sum()]
    return np.stack(cols, axis=1)


def make_truth(rng: np.random.Generator, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = SHAPE
    r, c = np.mgrid[0:rows, 0:cols]
    maps = []
    for cr, cc in ((94, 50), (69, 80)):
        d2 = (r - cr) ** 2 + (c - cc) ** 2
        h = 2 * np.sqrt(np.maximum(25.0**2 - d2, 0.0))
        maps.append(0.5 * h / h.max())
    H = np.stack([1 - maps[0] - maps[1], maps[0], maps[1]]).reshape(K, -1)
    m = G.shape[1]
    W = np.zeros((m, K))
    for j in range(K):
        W[:-2, j] = rng.gamma(0.6, size=m - 2)
        W[:-2, j] /= W[:-2, j].sum()
        W[-2:, j] = (0.05, 0.05)
    return W, H


def make_counts(rng, G, W, H, counts_per_pixel: float) -> sp.csr_matrix:
    D = G @ W
    D *= counts_per_pixel / (D @ H).sum(axis=0).mean()
    blocks = []
    p = H.shape[1]
    for a in range(0, p, 1024):
        lam = (D @ H[:, a : a + 1024]).T
        blocks.append(sp.csr_matrix(rng.poisson(lam).astype(np.uint16)))
    return sp.vstack(blocks).tocsr()


def time_smartnmf(X, G, W0, H0, n_iter: int, repeats: int = 3, **kw) -> tuple[float, float]:
    """Median and lower-quartile seconds per iteration, from per-iteration time stamps.

    The callback records a time stamp after every iteration; the differences are the
    iteration times (every ``loss_every``-th iteration also computes the loss). The medians of
    ``repeats`` fits are compared and the smallest kept: on a shared machine noise only ever
    adds time.
    """
    best = (np.inf, np.inf)
    for _ in range(repeats + 1):  # the first fit compiles and warms the caches
        stamps: list[float] = []
        est = SmartNMF(G, K, max_iter=n_iter, tol=0.0, progress=False, shape_2d=SHAPE,
                       callback=lambda *_, s=stamps: s.append(time.perf_counter()),
                       **kw)  # fmt: skip
        est.fit(X, W=W0, H=H0)
        d = np.diff(stamps)
        cand = (float(np.median(d)), float(np.percentile(d, 25)))
        best = min(best, cand)
    return best


def time_sklearn(X, n0: int, n1: int) -> float:
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    Xf = X.astype(np.float64)

    def run(n):
        est = NMF(K, solver="mu", beta_loss="kullback-leibler", init="random", max_iter=n,
                  tol=0.0, random_state=0)  # fmt: skip
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xf)
        return time.perf_counter() - t

    return (run(n1) - run(n0)) / (n1 - n0)


def peak_memory(X, G, W0, H0, n_iter: int = 20, **kw) -> int:
    est = SmartNMF(G, K, max_iter=n_iter, tol=0.0, progress=False, shape_2d=SHAPE, **kw)
    tracemalloc.start()
    est.fit(X, W=W0, H=H0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sklearn-iter", type=int, default=6)
    ap.add_argument("--iter", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    G = make_G()
    W, H = make_truth(rng, G)
    W0 = np.full_like(W, 1.0 / W.shape[0])
    H0 = np.full_like(H, 1.0 / K)
    dense_u16 = SHAPE[0] * SHAPE[1] * N_CH * 2
    res = {}
    for dose in (290.0, 18.0):
        X = make_counts(rng, G, W, H, dose)
        nnz = X.nnz
        print(f"\n== {dose:.0f} counts/pixel: {X.shape[0]} pixels × {X.shape[1]} channels, "
              f"nnz {nnz} ({nnz / X.shape[0]:.0f}/pixel), mean {X.sum() / X.shape[0]:.1f} "
              "counts/pixel")  # fmt: skip
        W0s = W0 * dose  # W in counts: G·W0 sums to ≈ dose per pixel
        for lam, mu in ((0.0, 0.0), (1.0, 0.004)):
            for dt in ("float64", "float32"):
                s, q1 = time_smartnmf(X, G, W0s, H0, args.iter, args.repeats, lambda_L=lam,
                                      mu=mu, epsilon_reg=0.01, dtype=dt)  # fmt: skip
                print(f"SmartNMF λ={lam} μ={mu} {dt}: {1e3 * s:7.2f} ms/iter "
                      f"(lower quartile {1e3 * q1:.2f})")  # fmt: skip
                res[(dose, lam, dt)] = s
        if dose == 290.0:
            sk = time_sklearn(X, 1, 1 + args.sklearn_iter)
            print(f"scikit-learn NMF(solver='mu', beta_loss='kullback-leibler'): "
                  f"{1e3 * sk:7.1f} ms/iter")  # fmt: skip
            ref = res[(dose, 0.0, "float64")]
            print(f"speed-up over scikit-learn (λ=0, float64): {sk / ref:.1f}×  (target ≥ 20×)")
            reg = res[(dose, 1.0, "float64")]
            print(f"speed-up over scikit-learn (λ=1, float64): {sk / reg:.1f}×")
            # the reference machine runs this scikit-learn fit at 0.29 s/iteration;
            # scaling by the ratio puts SmartNMF's time on that machine's clock (an estimate)
            f = SKLEARN_REFERENCE_S / sk
            print(f"scikit-learn takes {sk / SKLEARN_REFERENCE_S:.2f}× the reference machine's "
                  f"0.29 s/iter here; SmartNMF scaled to the reference machine (estimate): "
                  f"{1e3 * ref * f:.1f} ms/iter at λ=0, {1e3 * reg * f:.1f} ms/iter at λ=1 "
                  "(target ≤ 12 ms)")  # fmt: skip
        peak = peak_memory(X, G, W0s, H0, lambda_L=1.0, mu=0.004, epsilon_reg=0.01)
        print(f"peak traced memory during fit: {peak / 2**20:.1f} MiB = "
              f"{peak / dense_u16:.2f} × counts as dense uint16 ({dense_u16 / 2**20:.1f} MiB; "
              "target < 3×)")  # fmt: skip
    r0 = res[(290.0, 0.0, "float64")] / res[(18.0, 0.0, "float64")]
    r1 = res[(290.0, 1.0, "float64")] / res[(18.0, 1.0, "float64")]
    print(f"\nratio 290 → 18 counts/pixel (λ=0, float64): {r0:.1f}× (target ≥ 5×)")
    print(f"ratio 290 → 18 counts/pixel (λ=1, float64): {r1:.1f}×")


if __name__ == "__main__":
    main()

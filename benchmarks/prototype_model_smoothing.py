"""Smoothing the model's counts instead of the shares: a prototype outside the engine (issue 14).

Not a test: ``python benchmarks/prototype_model_smoothing.py CELL N0 N [--from-truth]
[--start-mu MU] [--forms shares:0.01 model:0 ...]`` takes a cell of ``validate_matrix.py``,
starts from the engine's default fit (with μ = ``MU``, default 0.01, so that no check runs)
stopped after ``N0`` iterations (or from the ground truth), and runs ``N`` iterations of dense
NumPy majorise-minimise updates (the fit's own G and λ, the H simplex) with each form of the
smoothing prior and the sparsity weight μ after the colon:

* ``shares``: the engine's Laplacian, (λ/2) Σ_edges ‖h_p − h_q‖². Contracting the maps towards
  their mean and moving the spectra outwards lowers it at no cost in the likelihood
  (``tests/nmf/test_prior_directions.py``): it leans.
* ``model``: (λ/2) Σ_edges (h_p − h_q)ᵀ M (h_p − h_q) with M = Dᵀ Λ D / c, D = G·W the phase
  spectra, Λ = diag(1/ȳ) the inverse mean spectrum of the map (a fixed weight per channel) and c
  the mean diagonal of M at the start (a constant, so that λ means about what it means for
  ``shares``). The penalty is that of the model's expected counts, the same for every (D A⁻¹,
  A H): it smooths what the counts show and leans nowhere.

H step: the Kullback-Leibler part by Jensen, the prior's tangent, and the smoothing term
majorised by a separable quadratic (L ⪯ 2·Deg and M ⪯ diag(M 1) for M ≥ 0, so the quadratic
coefficient of h_pk is λ·deg_p·(M 1)_k), solved exactly on the simplex (bisection on the
multiplier). W step: the multiplicative update of the Kullback-Leibler part with the smoothing
gradient λ P W S (P = Gᵀ Λ G / c, S = Hᵀ L H) split by sign between numerator and denominator
(a heuristic, not a proven majoriser: F is printed to watch it).

Printed every 250 iterations: F, the angles of the true phases with their matched components
(°), their mean, and the mean abundance of each matched phase (the truth's in brackets at the
start). Figures: docs/validation.rst, "Which way the priors lean".
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from validate_matrix import CELLS, make_cell, truth_start


def solve_simplex_quadratic(c, beta, q, n_bisect: int = 80) -> np.ndarray:
    """Rows x ≥ 0 with Σ x = 1 minimising Σ_k β_k x_k − c_k log x_k + q_k x_k² (c > 0, q ≥ 0).

    Stationarity: 2 q x² + (β + ν) x − c = 0 with one multiplier ν per row; x(ν) falls with ν,
    so ν is found by bisection on Σ x(ν) = 1."""

    def x_of(nu):
        b = beta + nu[:, None]
        disc = np.sqrt(b * b + 8.0 * q * c)
        # the positive root, written to avoid cancellation when b > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = np.where(b > 0, 2.0 * c / (b + disc), (disc - b) / np.maximum(4.0 * q, 1e-300))
        return np.where(c > 0, pos, 0.0)

    lo = -beta.max(axis=1) - 1.0
    while True:  # Σ x(lo) ≥ 1
        low = x_of(lo).sum(axis=1) < 1.0
        if not low.any():
            break
        lo = np.where(low, 2.0 * lo - 1.0, lo)
    hi = np.maximum(c.sum(axis=1) - beta.min(axis=1), lo + 1.0)
    while True:  # Σ x(hi) ≤ 1
        high = x_of(hi).sum(axis=1) > 1.0
        if not high.any():
            break
        hi = np.where(high, 2.0 * hi + 1.0, hi)
    for _ in range(n_bisect):
        mid = 0.5 * (lo + hi)
        big = x_of(mid).sum(axis=1) > 1.0
        lo = np.where(big, mid, lo)
        hi = np.where(big, hi, mid)
    x = x_of(0.5 * (lo + hi))
    return x / x.sum(axis=1, keepdims=True)


class Problem:
    """A cell's counts (scaled as the fit scales them), the fit's G, λ and ε, a start, the truth."""

    def __init__(self, cell: str, n0: int, from_truth: bool, seed: int = 0,
                 start_mu: float = 0.01) -> None:  # fmt: skip
        from esmpy_hs.nmf._laplacian import grid_adjacency
        from esmpy_hs.nmf._updates import g_colsums

        s = make_cell(cell, seed)
        k = CELLS[cell][1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False,
                                  return_info=True, max_iter=n0, mu=start_mu)  # fmt: skip
        c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
        Y = s.data.reshape(-1, s.data.shape[-1])[:, c0:c1].astype(np.float64) / est.scale_
        self.k, (self.p, self.n) = k, Y.shape
        self.pix, self.ch = np.nonzero(Y)
        self.y = Y[self.pix, self.ch]
        self.Y = Y.T  # channels × pixels, for the engine's objective_dense
        self.lam = float(s.metadata.SmartNMF.lambda_L)  # the λ the fit used (from the dose)
        self.eps = float(est.plan_.settings.eps_reg)
        self.G = np.asarray(est.G_, dtype=np.float64)
        self.Gt1 = g_colsums(self.G, self.n, k)
        self.indptr, self.indices = grid_adjacency(s.axes_manager.navigation_shape[::-1])
        self.src = np.repeat(np.arange(self.p), np.diff(self.indptr))
        self.deg = np.diff(self.indptr).astype(np.float64)
        self.lam_w = 1.0 / np.maximum(Y.mean(axis=0), 1e-3 * Y.mean())  # Λ: 1 / mean spectrum
        truth = s.metadata.ESMPY_truth
        self.T = np.asarray(truth.spectra, dtype=np.float64)[:, c0:c1]
        self.Htrue = np.asarray(truth.maps).reshape(k, -1).T
        if from_truth:
            W, H = truth_start(s)
            self.W0, self.H0 = W / est.scale_, H.T.copy()
        else:
            self.W0, self.H0 = est.W_ / est.scale_, est.H_.T.copy()
        D0 = self.G @ self.W0
        self.c = float(np.mean(np.diag(D0.T @ (self.lam_w[:, None] * D0))))

    def model(self, D, Ht):
        return (D[self.ch] * Ht[self.pix]).sum(axis=1)

    def by(self, index, size, weights):
        return np.stack([np.bincount(index, weights=w, minlength=size) for w in weights.T], 1)

    def neighbour_sums(self, Ht):
        return np.stack([np.bincount(self.src, weights=Ht[self.indices, j], minlength=self.p)
                         for j in range(self.k)], 1)  # fmt: skip

    def objective(self, D, Ht, form, mu):
        """F: the engine's Kullback-Leibler and sparsity parts (``objective_dense``) and the
        form's smoothing, (λ/2) Σ over the undirected edges of dᵀ M d."""
        from esmpy_hs.nmf._objective import objective_dense

        d = Ht[self.src] - Ht[self.indices]  # every edge twice
        M = self.metric(D, form)
        smooth = 0.5 * 0.5 * self.lam * float(np.einsum("ej,jl,el->", d, M, d))
        return objective_dense(self.Y, D, Ht.T, mu=mu, eps_reg=self.eps) + smooth

    def metric(self, D, form):
        if form == "shares":
            return np.eye(self.k)
        return D.T @ (self.lam_w[:, None] * D) / self.c

    def report(self, label, it, D, Ht, form, mu):
        from esmpy_hs.metrics import spectral_angle

        A = np.array([[spectral_angle(self.T[i], D[:, j]) for j in range(self.k)]
                      for i in range(self.k)])  # fmt: skip
        rows, cols = linear_sum_assignment(A)
        share = [float(Ht[:, cols[i]].mean()) for i in range(self.k)]
        mse = float(np.mean([(Ht[:, cols[i]] - self.Htrue[:, i]) ** 2 for i in range(self.k)]))
        print(f"  {label:12s} it {it:5d} F {self.objective(D, Ht, form, mu):.2f} angles "
              f"{np.round(A[rows, cols], 1).tolist()} mean {A[rows, cols].mean():.1f} "
              f"map MSE {mse:.5f} shares {np.round(share, 3).tolist()}", flush=True)  # fmt: skip

    def run(self, form: str, mu: float, n_iter: int) -> None:
        label = f"{form}:{mu:g}"
        W, Ht = self.W0.copy(), np.clip(self.H0.copy(), 1e-9, None)
        Ht /= Ht.sum(axis=1, keepdims=True)
        for it in range(n_iter + 1):
            D = self.G @ W
            if it % 250 == 0 or it == n_iter:
                self.report(label, it, D, Ht, form, mu)
            if it == n_iter:
                break
            M = self.metric(D, form)
            # H step
            R = self.y / self.model(D, Ht)
            c = Ht * self.by(self.pix, self.p, R[:, None] * D[self.ch])
            grad = self.lam * (self.deg[:, None] * Ht - self.neighbour_sums(Ht)) @ M
            q = self.lam * self.deg[:, None] * M.sum(axis=1)[None]
            beta = D.sum(axis=0)[None] + mu / (Ht + self.eps) + grad - 2.0 * q * Ht
            Ht = np.maximum(solve_simplex_quadratic(c, beta, q), 1e-12)
            Ht /= Ht.sum(axis=1, keepdims=True)
            # W step
            R = self.y / self.model(D, Ht)
            num = W * (self.G.T @ self.by(self.ch, self.n, R[:, None] * Ht[self.pix]))
            den = self.Gt1 * Ht.sum(axis=0)[None]
            if form == "model" and self.lam > 0:
                d = Ht[self.src] - Ht[self.indices]
                S = 0.5 * d.T @ d  # Hᵀ L H over the undirected edges
                P = self.G.T @ (self.lam_w[:, None] * self.G) / self.c
                PW = P @ W
                num = num + W * (self.lam * PW @ np.maximum(-S, 0.0))
                den = den + self.lam * PW @ np.maximum(S, 0.0)
            ok = den > 0
            W = np.where(ok, np.maximum(num / np.where(ok, den, 1.0), 1e-12), W)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cell", choices=list(CELLS))
    p.add_argument("n0", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--from-truth", action="store_true")
    p.add_argument(
        "--start-mu",
        type=float,
        default=0.01,
        help="μ of the engine's fit that makes the start (default 0.01, no check)",
    )
    p.add_argument("--forms", nargs="+",
                   default=["shares:0.01", "shares:0", "model:0.01", "model:0"])  # fmt: skip
    args = p.parse_args(argv)
    prob = Problem(args.cell, args.n0, args.from_truth, start_mu=args.start_mu)
    start = (
        "the truth"
        if args.from_truth
        else f"the default fit (μ = {args.start_mu:g}) after {args.n0} iterations"
    )
    print(f"{args.cell}: from {start}; λ {prob.lam:.3g}, ε {prob.eps}", flush=True)
    for spec in args.forms:
        form, mu = spec.split(":")
        t0 = time.perf_counter()
        prob.run(form, float(mu), args.n)
        print(f"  {spec}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""Exact minimisation of the separable per-column surrogate, with or without a sum constraint.

Every multiplicative update of this package (the H step per pixel, the W step per phase) ends in
the same small problem, one per column::

    minimise   Σ_i  −c_i log x_i + β_i x_i + q x_i²
    subject to x_i ≥ ε          (free entries only; fixed entries are left alone)
    and, under a simplex,  Σ_i x_i = T

with c_i ≥ 0 (the Jensen/majorisation numerator, ``x_old · (Dᵀ R)``), β_i real (the linear
coefficient: ``Dᵀ1`` plus the tangent of the log prior minus the Laplacian's neighbour term) and
q ≥ 0 (the Laplacian's separable quadratic; the same for all entries of a column).

Without the constraint the minimiser of each entry is ``max(g_i(0), ε)`` with ``g_i(ν)`` the
positive root of ``2q x² + (β_i + ν) x − c_i = 0`` (``c_i / (β_i + ν)`` when q = 0). With the
constraint, KKT gives ``x_i = max(g_i(ν), ε)`` for the one multiplier ν solving
``φ(ν) = Σ_i max(g_i(ν), ε) = T``. φ is convex and non-increasing in ν, so a safeguarded Newton
iteration inside a bracket converges in a handful of steps. The degenerate case where the
minimising direction has c_i = 0 and q = 0 (e.g. an empty pixel: the surrogate is linear) is solved
exactly by putting the remaining mass on the entry with the smallest β.

All functions here are numba-compiled; :func:`solve_columns` applies the solver to every column of
a matrix in compiled code (no Python loop over columns or pixels).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MAX_NEWTON = 200


@njit(cache=True, inline="always")
def _g(c, x, q):
    """Positive root of ``2q h² + x h − c = 0`` (``c / x`` when q = 0; x > 0 is then required)."""
    if q == 0.0:
        return c / x
    s = np.sqrt(x * x + 8.0 * q * c)
    if x > 0.0:
        return 2.0 * c / (x + s)
    return (s - x) / (4.0 * q)


@njit(cache=True, inline="always")
def _dg(c, x, q, g):
    """Derivative of :func:`_g` with respect to x (equivalently ν), given its value g."""
    if q == 0.0:
        return -g / x
    s = np.sqrt(x * x + 8.0 * q * c)
    return -g / s


@njit(cache=True)
def solve_column(c, beta, q, free, total, eps, simplex, rtol, out):
    """Minimise the separable surrogate of one column; write the free entries of ``out``.

    Parameters
    ----------
    c, beta : 1-D float arrays (length r)
        Numerators (≥ 0) and linear coefficients of the surrogate.
    q : float
        Quadratic coefficient (≥ 0), common to all entries.
    free : 1-D bool array
        Entries to solve for; the others are not written.
    total : float
        Required sum T of the free entries (used only when ``simplex``).
    eps : float
        Lower bound of every free entry.
    simplex : bool
        Impose ``Σ_free out = total``.
    rtol : float
        Relative tolerance on the sum.
    out : 1-D float array
        Output; ``out`` on entry holds the previous iterate, kept where the surrogate is flat.

    Returns
    -------
    float
        The multiplier ν (0 without the simplex).
    """
    r = c.shape[0]
    if not simplex:
        for i in range(r):
            if not free[i]:
                continue
            x = beta[i]
            if q == 0.0 and x <= 0.0:
                # flat (c = 0 and β = 0): keep the old value; c > 0 with β ≤ 0 cannot occur
                # for a well-posed problem (β ≥ Dᵀ1 > 0 wherever c > 0).
                if c[i] > 0.0:
                    out[i] = max(out[i], eps)
                continue
            v = _g(c[i], x, q)
            out[i] = v if v > eps else eps
        return 0.0

    nfree = 0
    for i in range(r):
        if free[i]:
            nfree += 1
    if nfree == 0:
        return 0.0

    # --- bracket [lo, hi] with φ(lo) ≥ T ≥ φ(hi)
    hi = -np.inf
    for i in range(r):
        if free[i]:
            cand = nfree * c[i] / total - beta[i]
            if cand > hi:
                hi = cand
            if -beta[i] > hi:
                hi = -beta[i]
    if q == 0.0:
        nu_b = -np.inf
        for i in range(r):
            if free[i] and -beta[i] > nu_b:
                nu_b = -beta[i]
        # does an entry with c > 0 sit on the boundary? then φ → ∞ there
        inf_at_b = False
        for i in range(r):
            if free[i] and -beta[i] == nu_b and c[i] > 0.0:
                inf_at_b = True
        if not inf_at_b:
            # φ(ν_b+) is finite: evaluate it
            phi_b = 0.0
            for i in range(r):
                if free[i]:
                    x = beta[i] + nu_b
                    v = c[i] / x if x > 0.0 else 0.0
                    phi_b += v if v > eps else eps
            if phi_b < total:
                # degenerate: linear direction(s) at the boundary take the remaining mass
                istar = -1
                acc = 0.0
                for i in range(r):
                    if not free[i]:
                        continue
                    x = beta[i] + nu_b
                    if istar < 0 and x <= 0.0:
                        istar = i
                        continue
                    v = c[i] / x if x > 0.0 else 0.0
                    v = v if v > eps else eps
                    out[i] = v
                    acc += v
                out[istar] = total - acc
                return nu_b
        lo = nu_b  # open boundary: φ(ν_b+) ≥ T
        if hi <= lo:
            hi = lo + 1.0
    else:
        lo = np.inf
        for i in range(r):
            if free[i]:
                cand = -beta[i] - 2.0 * q * total
                if cand < lo:
                    lo = cand
        lo -= 1.0

    # --- safeguarded Newton on ψ(ν) = 1/φ(ν) − 1/T. For φ = C/(β + ν) (equal β's) ψ is linear
    # and one step is exact; in general 1/φ is close to linear, so 2–4 steps reach 1e-13.
    # Start at Σc/T − max β (left of the root when neither floor nor quadratic binds).
    csum = 0.0
    bmax = -np.inf
    for i in range(r):
        if free[i]:
            csum += c[i]
            if beta[i] > bmax:
                bmax = beta[i]
    nu = csum / total - bmax
    if nu <= lo or nu >= hi:
        nu = 0.5 * (lo + hi)
    for _ in range(_MAX_NEWTON):
        phi = 0.0
        dphi = 0.0
        for i in range(r):
            if not free[i]:
                continue
            x = beta[i] + nu
            if q == 0.0 and x <= 0.0:
                phi = np.inf
                break
            v = _g(c[i], x, q)
            if v > eps:
                phi += v
                dphi += _dg(c[i], x, q, v)
            else:
                phi += eps
        f = phi - total
        if abs(f) <= rtol * total:
            break
        if f > 0.0:
            lo = nu
        else:
            hi = nu
        step_ok = False
        if np.isfinite(phi) and dphi < 0.0:
            cand = nu + phi * (1.0 - phi / total) / dphi
            if lo < cand < hi:
                nu = cand
                step_ok = True
        if not step_ok:
            nu = 0.5 * (lo + hi)
        if hi - lo <= 1e-15 * max(abs(lo), abs(hi), 1e-300):
            break

    s = 0.0
    for i in range(r):
        if free[i]:
            x = beta[i] + nu
            v = _g(c[i], x, q) if (q > 0.0 or x > 0.0) else total
            v = v if v > eps else eps
            out[i] = v
            s += v
    # remove the last rounding error of the sum on the entries above the floor
    if s != total:
        above = 0.0
        for i in range(r):
            if free[i] and out[i] > eps:
                above += out[i]
        if above > 0.0:
            fac = (total - (s - above)) / above
            if fac > 0.0:
                for i in range(r):
                    if free[i] and out[i] > eps:
                        out[i] *= fac
    return nu


@njit(cache=True)
def solve_columns(C, B, q, free, total, eps, simplex, rtol, out):
    """Apply :func:`solve_column` to every column ``j`` of ``C``/``B`` (shape r × k).

    ``q`` and ``total`` have one entry per column; ``free`` has the shape of ``C``; ``out`` holds
    the previous iterate on entry and the result on exit. Returns the multipliers (length k).
    """
    r, k = C.shape
    nus = np.zeros(k)
    c = np.empty(r)
    b = np.empty(r)
    f = np.empty(r, dtype=np.bool_)
    o = np.empty(r)
    for j in range(k):
        for i in range(r):
            c[i] = C[i, j]
            b[i] = B[i, j]
            f[i] = free[i, j]
            o[i] = out[i, j]
        nus[j] = solve_column(c, b, q[j], f, total[j], eps, simplex, rtol, o)
        for i in range(r):
            if f[i]:
                out[i, j] = o[i]
    return nus

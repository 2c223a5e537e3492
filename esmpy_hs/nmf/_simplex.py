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
def _g_dg(c, x, q):
    """:func:`_g` and its derivative with respect to x (equivalently ν), with one division
    (and one square root when q > 0)."""
    if q == 0.0:
        inv = 1.0 / x
        g = c * inv
        return g, -g * inv
    s = np.sqrt(x * x + 8.0 * q * c)
    inv = 1.0 / (x + s) if x > 0.0 else 0.0
    g = 2.0 * c * inv if x > 0.0 else (s - x) / (4.0 * q)
    # s = 0 only where c = 0 and x = 0, the kink of g = max(−x, 0)/(2q): its left slope
    return g, (-g / s if s > 0.0 else -0.5 / q)


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

    # one sweep: number of free entries, Σc, max β, and the bracket ends
    nfree = 0
    csum = 0.0
    bmax = -np.inf
    hi = -np.inf  # φ(hi) ≤ T: every g_i(hi) ≤ T / nfree (or ε)
    nu_b = -np.inf  # q = 0: φ has a pole at −β_i for c_i > 0; ν must stay right of max(−β)
    inf_at_b = False  # does an entry with c > 0 sit on that boundary? then φ → ∞ there
    lo_q = np.inf  # q > 0: φ(lo_q) ≥ T
    for i in range(r):
        if not free[i]:
            continue
        nfree += 1
        ci = c[i]
        bi = beta[i]
        csum += ci
        if bi > bmax:
            bmax = bi
        if -bi > hi:
            hi = -bi
        if -bi > nu_b:
            nu_b = -bi
            inf_at_b = ci > 0.0
        elif -bi == nu_b and ci > 0.0:
            inf_at_b = True
        cand = -bi - 2.0 * q * total
        if cand < lo_q:
            lo_q = cand
    if nfree == 0:
        return 0.0
    cmax_term = -np.inf
    for i in range(r):
        if free[i]:
            cand = nfree * c[i] / total - beta[i]
            if cand > cmax_term:
                cmax_term = cand
    if cmax_term > hi:
        hi = cmax_term

    if q == 0.0:
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
        lo = lo_q - 1.0

    # --- safeguarded Newton on ψ(ν) = 1/φ(ν) − 1/T. For φ = C/(β + ν) (equal β's) ψ is linear
    # and one step is exact; in general 1/φ is close to linear, so 2–4 steps reach rtol.
    # Start from the stationarity condition c_i = x_i (β_i + ν + 2q x_i) summed over i with the
    # previous iterate for x (exact at a fixed point of the updates, so late iterations need
    # one or two steps); otherwise from Σc/T − max β (left of the root when neither floor nor
    # quadratic binds), or the middle of the bracket.
    sxb = 0.0
    sxx = 0.0
    sx = 0.0
    for i in range(r):
        if free[i]:
            xi = out[i]
            sx += xi
            sxb += xi * beta[i]
            sxx += xi * xi
    nu = (csum - sxb - 2.0 * q * sxx) / total
    if not (sx > 0.0 and abs(sx - total) <= 1e-6 * total and lo < nu < hi):
        nu = csum / total - bmax
        if nu <= lo or nu >= hi:
            nu = 0.5 * (lo + hi)
    # the entries of the last evaluation of φ are written to ``out`` as they are computed: when
    # it meets the tolerance they are the answer (no sweep to recompute them)
    converged = False
    phi = 0.0
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
            v, dv = _g_dg(c[i], x, q)
            if v > eps:
                phi += v
                dphi += dv
                out[i] = v
            else:
                phi += eps
                out[i] = eps
        f = phi - total
        if abs(f) <= rtol * total:
            converged = True
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

    s = phi
    if not converged:
        s = 0.0
        for i in range(r):
            if free[i]:
                x = beta[i] + nu
                v = _g(c[i], x, q) if (q > 0.0 or x > 0.0) else total
                v = v if v > eps else eps
                out[i] = v
                s += v
    fix_sum(out, free, total, eps, s)
    return nu


@njit(cache=True, inline="always")
def fix_sum(out, free, total, eps, s):
    """Remove the last rounding error of ``s``, the sum of the free entries of ``out``: the
    entries above the floor ``eps`` are scaled so that the free entries sum to ``total``."""
    if s == total:
        return
    above = 0.0
    for i in range(free.shape[0]):
        if free[i] and out[i] > eps:
            above += out[i]
    if above > 0.0:
        fac = (total - (s - above)) / above
        if fac > 0.0:
            for i in range(free.shape[0]):
                if free[i] and out[i] > eps:
                    out[i] *= fac


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


@njit(cache=True)
def solve_free_simplex(c, beta, q, total, eps, rtol, out, kt):
    """:func:`solve_column` under the simplex with every entry free, compiled for one length
    ``len(kt)`` (``kt = (0,) * r``, as the passes pass k: the loops over the entries are
    unrolled); returns False (``out`` untouched) where it does not apply: q = 0 with the largest
    −β on an entry without counts (the degenerate case :func:`solve_column` handles).

    The same steps and the same arithmetic as :func:`solve_column` with ``free`` all True (the
    same bracket, start, Newton steps, final sweep and :func:`fix_sum`), so the same result (to
    the last unit: compiled separately, a few roundings differ; tests/nmf/test_pass_switches.py).
    Called from the passes (:data:`._kernels.UNROLLED_SIMPLEX`), not inlined: inlining the
    solver into them made their compilation 40–60 % longer; compiled once per k, this adds
    about nothing to it. Issue 18, docs/validation.rst.
    """
    r = len(kt)  # compile-time constant: the loops unrolled
    csum = 0.0
    bmax = -np.inf
    hi = -np.inf
    nu_b = -np.inf
    inf_at_b = False
    lo_q = np.inf
    for i in range(r):
        ci = c[i]
        bi = beta[i]
        csum += ci
        if bi > bmax:
            bmax = bi
        if -bi > hi:
            hi = -bi
        if -bi > nu_b:
            nu_b = -bi
            inf_at_b = ci > 0.0
        elif -bi == nu_b and ci > 0.0:
            inf_at_b = True
        cand = -bi - 2.0 * q * total
        if cand < lo_q:
            lo_q = cand
    cmax_term = -np.inf
    for i in range(r):
        cand = r * c[i] / total - beta[i]
        if cand > cmax_term:
            cmax_term = cand
    if cmax_term > hi:
        hi = cmax_term
    if q == 0.0:
        if not inf_at_b:
            return False
        lo = nu_b
        if hi <= lo:
            hi = lo + 1.0
    else:
        lo = lo_q - 1.0
    sxb = 0.0
    sxx = 0.0
    sx = 0.0
    for i in range(r):
        xi = out[i]
        sx += xi
        sxb += xi * beta[i]
        sxx += xi * xi
    nu = (csum - sxb - 2.0 * q * sxx) / total
    if not (sx > 0.0 and abs(sx - total) <= 1e-6 * total and lo < nu < hi):
        nu = csum / total - bmax
        if nu <= lo or nu >= hi:
            nu = 0.5 * (lo + hi)
    converged = False
    phi = 0.0
    for _ in range(_MAX_NEWTON):
        phi = 0.0
        dphi = 0.0
        for i in range(r):
            x = beta[i] + nu
            if q == 0.0 and x <= 0.0:
                phi = np.inf
                break
            v, dv = _g_dg(c[i], x, q)
            if v > eps:
                phi += v
                dphi += dv
                out[i] = v
            else:
                phi += eps
                out[i] = eps
        f = phi - total
        if abs(f) <= rtol * total:
            converged = True
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
    s = phi
    if not converged:
        s = 0.0
        for i in range(r):
            x = beta[i] + nu
            v = _g(c[i], x, q) if (q > 0.0 or x > 0.0) else total
            v = v if v > eps else eps
            out[i] = v
            s += v
    if s != total:
        above = 0.0
        for i in range(r):
            if out[i] > eps:
                above += out[i]
        if above > 0.0:
            fac = (total - (s - above)) / above
            if fac > 0.0:
                for i in range(r):
                    if out[i] > eps:
                        out[i] *= fac
    return True


@njit(cache=True)
def solve_free_simplex_rows(C, B, Q, n, eps, rtol, OUT, ok, work, kt):
    """:func:`solve_free_simplex` (T = 1) for the rows ``0 … n−1`` of ``C``/``B``/``Q``/``OUT``
    at once: the same steps for every row, each Newton step taken for all the rows still
    iterating before the next, so that the processor overlaps the rows' square roots and
    divisions (one row's steps are a chain of them, and rows are independent).

    Parameters
    ----------
    C, B : 2-D float64 arrays (≥ n rows × ``len(kt)``)
        Numerators and linear coefficients, one surrogate per row.
    Q : 1-D float64 array (≥ n)
        The rows' quadratic coefficients.
    n : int
        Number of rows to solve.
    eps, rtol : float
        As :func:`solve_column`.
    OUT : 2-D float64 array (≥ n rows × ``len(kt)``)
        The rows' previous iterates on entry (the Newton start), their answers on exit; a row
        the solver declines is left untouched.
    ok : 1-D bool array (≥ n)
        Receives, per row, whether it was solved: False where :func:`solve_free_simplex` would
        return False (q = 0 with the largest −β on an entry without counts; the caller solves
        those with :func:`solve_column`).
    work : 2-D float64 array (≥ 5 × n)
        Scratch (the rows' bracket, multiplier, φ and state).
    kt : tuple
        ``(0,) * r``: r, the length of a row, as a compile-time constant.

    Every row gets the result of :func:`solve_free_simplex` on it (the same arithmetic in the
    same order; tests/nmf/test_pass_switches.py). Issue 18, fourth round, docs/validation.rst.
    """
    r = len(kt)
    total = 1.0
    LO = work[0]
    HI = work[1]
    NU = work[2]
    PHI = work[3]
    STATE = work[4]  # 0: iterating, 1: converged, 2: bracket exhausted, 3: declined
    active = 0
    for row in range(n):
        q = Q[row]
        csum = 0.0
        bmax = -np.inf
        hi = -np.inf
        nu_b = -np.inf
        inf_at_b = False
        lo_q = np.inf
        for i in range(r):
            ci = C[row, i]
            bi = B[row, i]
            csum += ci
            if bi > bmax:
                bmax = bi
            if -bi > hi:
                hi = -bi
            if -bi > nu_b:
                nu_b = -bi
                inf_at_b = ci > 0.0
            elif -bi == nu_b and ci > 0.0:
                inf_at_b = True
            cand = -bi - 2.0 * q * total
            if cand < lo_q:
                lo_q = cand
        cmax_term = -np.inf
        for i in range(r):
            cand = r * C[row, i] / total - B[row, i]
            if cand > cmax_term:
                cmax_term = cand
        if cmax_term > hi:
            hi = cmax_term
        if q == 0.0:
            if not inf_at_b:
                ok[row] = False
                STATE[row] = 3.0
                continue
            lo = nu_b
            if hi <= lo:
                hi = lo + 1.0
        else:
            lo = lo_q - 1.0
        sxb = 0.0
        sxx = 0.0
        sx = 0.0
        for i in range(r):
            xi = OUT[row, i]
            sx += xi
            sxb += xi * B[row, i]
            sxx += xi * xi
        nu = (csum - sxb - 2.0 * q * sxx) / total
        if not (sx > 0.0 and abs(sx - total) <= 1e-6 * total and lo < nu < hi):
            nu = csum / total - bmax
            if nu <= lo or nu >= hi:
                nu = 0.5 * (lo + hi)
        ok[row] = True
        LO[row] = lo
        HI[row] = hi
        NU[row] = nu
        PHI[row] = 0.0
        STATE[row] = 0.0
        active += 1
    for _ in range(_MAX_NEWTON):
        if active == 0:
            break
        for row in range(n):
            if STATE[row] != 0.0:
                continue
            q = Q[row]
            nu = NU[row]
            phi = 0.0
            dphi = 0.0
            for i in range(r):
                x = B[row, i] + nu
                if q == 0.0 and x <= 0.0:
                    phi = np.inf
                    break
                v, dv = _g_dg(C[row, i], x, q)
                if v > eps:
                    phi += v
                    dphi += dv
                    OUT[row, i] = v
                else:
                    phi += eps
                    OUT[row, i] = eps
            PHI[row] = phi
            f = phi - total
            if abs(f) <= rtol * total:
                STATE[row] = 1.0
                active -= 1
                continue
            lo = LO[row]
            hi = HI[row]
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
            LO[row] = lo
            HI[row] = hi
            NU[row] = nu
            if hi - lo <= 1e-15 * max(abs(lo), abs(hi), 1e-300):
                STATE[row] = 2.0
                active -= 1
    for row in range(n):
        if STATE[row] == 3.0:
            continue
        s = PHI[row]
        if STATE[row] != 1.0:
            # not converged (the bracket exhausted or the steps spent): the entries at the last ν
            q = Q[row]
            nu = NU[row]
            s = 0.0
            for i in range(r):
                x = B[row, i] + nu
                v = _g(C[row, i], x, q) if (q > 0.0 or x > 0.0) else total
                v = v if v > eps else eps
                OUT[row, i] = v
                s += v
        if s != total:
            above = 0.0
            for i in range(r):
                if OUT[row, i] > eps:
                    above += OUT[row, i]
            if above > 0.0:
                fac = (total - (s - above)) / above
                if fac > 0.0:
                    for i in range(r):
                        if OUT[row, i] > eps:
                            OUT[row, i] *= fac

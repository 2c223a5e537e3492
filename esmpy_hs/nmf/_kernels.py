"""The compiled per-iteration pass over the counts (the hot loop of the solver).

One call of :func:`h_pass_sparse` (or :func:`h_pass_dense`) processes a contiguous range of pixels
(a *chunk*: the whole map for the in-memory solver, one block for a chunked driver). For each
pixel p, while its counts are in cache, it

1. computes the model ``m_c = D[c] · h_p`` (old h_p) on the pixel's nonzero channels, the ratio
   ``r_c = y_c / m_c`` (y scaled by ``inv_scale``), the numerator ``a = Dᵀ r`` and, if asked, the
   loss terms of the current iterate;
2. updates h_p by exact minimisation of the majorising surrogate (see :mod:`._simplex`): the
   Kullback-Leibler part (Jensen), the tangent of the log prior, the separable quadratic majoriser
   of the Laplacian (which needs the *previous* h of the neighbours, read from the global ``Ht``),
   the H simplex and the fixed entries (a pixel without counts in closed form: a projection on
   the simplex, see :func:`_project_empty`);
3. recomputes the ratios with the new h_p and accumulates ``R Hᵀ`` (channels × k) and ``H 1``
   into per-block accumulators.

Pixels are split into ``acc.shape[0]`` blocks processed in parallel (``numba.prange``); a block is
every ``nblocks``-th stripe of 64 pixels, so the threads share the costly and the cheap parts of a
map evenly. Each block writes its own accumulator, so the result does not depend on the number of
threads. The per-pixel helpers are inlined into the block loop (numba ``inline="always"``): at
low dose the calls cost as much as the arithmetic. The surrogate solver is called, not inlined:
inlining it saved about 10 % at low dose but more than doubled the compile time; under the
H simplex without fixed entries the one called is compiled for the pass's k
(:data:`UNROLLED_SIMPLEX`). The general H step of a pixel (:func:`_update_pixel`: fixed entries,
no H simplex) is called too: inlined into the sparse and the dense block it made up about a
tenth of the compile time of every pass, for paths the default fit does not take. The caller
sums the blocks (see :func:`esmpy_hs.nmf._solver.h_pass`).

Storage: ``D`` is channels × k and ``Ht`` is pixels × k (pixel-major), both C-contiguous and of the
working float type (float32 or float64); arithmetic on scalars is float64. Counts are uint16 or
float, channel indices uint16 or int32 (see :mod:`._data`).

Loss parts (per block, float64), for the iterate *entering* the pass (D, old H):

- ``loss[b, 0] = Σ y' log(y'/m)`` over the nonzeros (y' = scaled counts),
- ``loss[b, 1] = Σ m`` (computed as ``Σ_p (1ᵀD)·h_p``),
- ``loss[b, 2] = Σ μ_k log(H_kp + ε_k)`` (ε_k: ``eps_reg[k]``, the per-phase ε of the prior,
  see :mod:`._prior`; with the prior on the counts the caller adds ``Σ μ_k log r_k`` per pixel),
- ``loss[b, 3] = (λ/2) tr(H Δ Hᵀ)`` restricted to the block's pixels (each edge counted half
  from each end, so the sum over blocks is exact).

The objective is ``Σ_blocks (loss[:,0] + loss[:,1] + loss[:,2] + loss[:,3]) − Σ y'``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from esmpy_hs.nmf._simplex import (
    fix_sum,
    solve_column,
    solve_free_simplex,
    solve_free_simplex_rows,
)

#: LLVM fast-math flags of the kernels: fused multiply-add, reassociation of the sums over a
#: pixel's counts and x/y → x·(1/y). No "no-NaN/no-inf" assumptions (the fixed entries are NaN
#: where free). Measured 4–15 % faster; results move by ~1e-14 relative and stay deterministic.
_FASTMATH = {"contract", "reassoc", "arcp"}
#: floor of the model value on a nonzero count (guards channels where D is zero)
_TINY = 1e-30
#: exact power-of-two rescaling of the running product of ratios in the loss
_BIG = 2.0**200
_SMALL = 2.0**-200
#: pixels per stripe: block b of n processes stripes b, b + n, b + 2n, … of the chunk, so every
#: block (and every thread of a static schedule) gets pixels from all over the map, whatever
#: their cost (particles, empty regions), and reads each stripe's counts contiguously
_STRIPE = 64
_LOG_BIG = 200.0 * np.log(2.0)
#: counts up to this enter the loss's running product as powers of the ratio (no logarithm)
_PROD_MAX = 7
_BIG_R = 2.0**100
_SMALL_R = 2.0**-100
#: up to 4 components, the sweeps over a pixel's nonzeros keep h and the sums ``Dᵀ r`` in
#: scalars (registers): the stores to the arrays ``a``/``acc`` might alias ``h`` or ``D``, so
#: LLVM reloads and stores array entries at every count. The plain pass −9 % (issue 18,
#: docs/validation.rst); the same sums in the same order. Read at compile time: the baseline
#: is measured with ``benchmarks/bench_pass.py --baseline REV`` (the kernels of a revision
#: before, in the same process).
SCALAR_SUMS = True
#: the ratio sweep of the plain sparse pass (H step, no loss) takes a pixel's counts two at a
#: time (k ≤ 4, with :data:`SCALAR_SUMS`): the two models and divisions of a pair are
#: independent and the pair's terms of ``Dᵀ r`` are added to the running sums together (the sums
#: over one pixel's counts are chains of dependent adds): 4 % less time per plain pass at 128²
#: (the same pairing of the ``R Hᵀ`` sweep gained nothing and is not made). ``Dᵀ r``: the same
#: terms summed in another order (~1e-16 relative). Read at compile time; False: the sweep
#: before (issue 18, docs/validation.rst).
PAIRED_COUNTS = True
#: the H step of a pixel under the simplex without fixed entries solves its surrogate with
#: :func:`._simplex.solve_free_simplex`, compiled for the pass's k (its loops unrolled: up to 5 %
#: less time per plain pass at k = 3), instead of :func:`._simplex.solve_column` for any length
#: (the same steps: the same result to the last unit). Read at compile time; False: always
#: :func:`._simplex.solve_column` (issue 18, docs/validation.rst).
UNROLLED_SIMPLEX = True
#: the H step of a pixel under the simplex without fixed entries (the default fit) takes a path
#: of its own (:func:`_update_free`): the same arithmetic in the same order as
#: :func:`_update_pixel`, with the rare cases (a pixel without counts, the degenerate surrogate)
#: behind calls instead of inlined; the general path inlined cost about 2 ms of a 128² pass
#: on one thread in register traffic (issue 18, third round, docs/validation.rst). The same
#: results (bit for bit where the compiler orders the two alike). Read at compile time; False:
#: :func:`_update_pixel` for every pixel.
FREE_SIMPLEX_PATH = True
#: the sparse sweeps (k ≤ 4, with :data:`SCALAR_SUMS`) read D and write the ``R Hᵀ``
#: accumulator through flat views, a channel's row at ``k · channel`` with k a compile-time
#: constant, and run over a pixel's nonzeros with unsigned positions: no multiplication by a
#: run-time stride per count and no check for negative indices (NumPy's wraparound) per array
#: read. The same arithmetic in the same order (bit for bit); fewer instructions per count
#: (issue 18, fourth round, docs/validation.rst). Read at compile time; False: the sweeps before.
FLAT_ROWS = True
#: the sparse pass under the H simplex without fixed entries (:data:`FREE_SIMPLEX_PATH`) solves
#: the surrogates of a stripe's pixels together (:func:`._simplex.solve_free_simplex_rows`)
#: between its first sweeps and its ``R Hᵀ`` sweeps, instead of each pixel's between its two:
#: a pixel's Newton steps are a chain of square roots and divisions that the processor cannot
#: overlap with the next pixel's across the thousands of instructions of the sweeps between;
#: taken a step at a time for the stripe's pixels they overlap. The same arithmetic, the stores
#: and sums in the same pixel order; compiled in another function, the fast-math flags may
#: associate a pixel's sums over its counts in another order (H and ``R Hᵀ`` within a few units
#: in the last place; whole fits: the same iterations and answers to 5e-6°). Only the passes
#: without the loss (k ≤ 4). Read at compile time; False: each pixel's solve between its sweeps
#: (issue 18, fourth round, docs/validation.rst).
BATCHED_SOLVE = True
#: unsigned 1, 2, 3 (flat row offsets and steps of the sweeps with :data:`FLAT_ROWS`: an unsigned
#: index plus a signed integer would be typed as a float)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)


@njit(cache=True, inline="always")
def _h4(h, kt):
    """The first (up to) four components of h as scalars (0 beyond k)."""
    k = len(kt)
    return (h[0], h[1] if k > 1 else 0.0, h[2] if k > 2 else 0.0, h[3] if k > 3 else 0.0)


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _model4(D, ch, h0, h1, h2, h3, kt):
    """``max(D[ch] · h, _TINY)`` for k ≤ 4 (h in scalars)."""
    k = len(kt)
    m = D[ch, 0] * h0
    if k > 1:
        m += D[ch, 1] * h1
    if k > 2:
        m += D[ch, 2] * h2
    if k > 3:
        m += D[ch, 3] * h3
    if m < _TINY:
        m = _TINY
    return m


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _axpy4(D, ch, r, a0, a1, a2, a3, kt):
    """``(a0, …, a3) + r · D[ch]`` for k ≤ 4."""
    k = len(kt)
    a0 += D[ch, 0] * r
    if k > 1:
        a1 += D[ch, 1] * r
    if k > 2:
        a2 += D[ch, 2] * r
    if k > 3:
        a3 += D[ch, 3] * r
    return a0, a1, a2, a3


@njit(cache=True, inline="always")
def _add4(a, a0, a1, a2, a3, kt):
    """``a += (a0, …, a3)`` for k ≤ 4."""
    k = len(kt)
    a[0] += a0
    if k > 1:
        a[1] += a1
    if k > 2:
        a[2] += a2
    if k > 3:
        a[3] += a3


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _scatter4(acc, ch, r, h0, h1, h2, h3, kt):
    """``acc[ch] += r · h`` for k ≤ 4."""
    k = len(kt)
    acc[ch, 0] += r * h0
    if k > 1:
        acc[ch, 1] += r * h1
    if k > 2:
        acc[ch, 2] += r * h2
    if k > 3:
        acc[ch, 3] += r * h3


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _neighbour_terms(p, h, lam, adj_indptr, adj_indices, Ht, beta, seq, k):
    """The Laplacian's part of pixel p's surrogate: subtracts the neighbours' terms from
    ``beta`` (in place) and returns the quadratic coefficient q (0 without λ or neighbours).

    ``seq``: the neighbours are held while p moves (red-black sweep: ``(λ/2)·deg·x² − λ·s·x``);
    otherwise the Laplacian is majorised per edge (``λ·deg·x² − λ·(deg·h + s)·x``). ``s`` is
    the sum of the neighbours' h read from ``Ht``; each neighbour's row is read once (the first
    four components in local scalars: the same sums in the same order as one component at a
    time).
    """
    if lam <= 0.0:
        return 0.0
    a0 = adj_indptr[p]
    a1 = adj_indptr[p + 1]
    deg = a1 - a0
    if deg <= 0:
        return 0.0
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for t in range(a0, a1):
        qn = adj_indices[t]
        s0 += Ht[qn, 0]
        if k > 1:
            s1 += Ht[qn, 1]
        if k > 2:
            s2 += Ht[qn, 2]
        if k > 3:
            s3 += Ht[qn, 3]
    for j in range(k):
        if j == 0:
            s = s0
        elif j == 1:
            s = s1
        elif j == 2:
            s = s2
        elif j == 3:
            s = s3
        else:
            s = 0.0
            for t in range(a0, a1):
                s += Ht[adj_indices[t], j]
        beta[j] -= lam * s if seq else lam * (deg * h[j] + s)
    return 0.5 * lam * deg if seq else lam * deg


@njit(cache=True, fastmath=_FASTMATH)
def _update_pixel(
    p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht,
    simplex, fixed, eps, rtol, c, beta, free, hn, seq, off, kt,
):  # fmt: skip
    """Solve the surrogate of pixel p (global index) / i (chunk index); write ``hn``.

    Called, not inlined (see the module docstring): the default fit takes :func:`_update_free`.

    A pixel without counts (every ``c`` zero) with q > 0 under the simplex is solved in closed
    form (:func:`_project_empty`), the same way in the sparse and the dense pass.

    ``seq``: the neighbours are held while p moves (red-black sweep: the Laplacian part is
    exact, ``(λ/2)·deg·x² − λ·s·x``); otherwise they move at the same time and the Laplacian is
    majorised per edge (``λ·deg·x² − λ·(deg·h + s)·x``). ``s`` is the sum of the neighbours' h
    read from ``Ht``.
    """
    k = h.shape[0]
    has_fixed = fixed.shape[0] > 0
    total = 1.0
    for j in range(k):
        hn[j] = h[j]
        free[j] = True
        if has_fixed:
            fv = fixed[i, j]
            if not np.isnan(fv):
                free[j] = False
                hn[j] = fv
                total -= fv
        c[j] = h[j] * a[j]
        beta[j] = colsum[j] + mu[j] / (h[j] + eps_reg[j])
        if off.shape[0] > 0:
            beta[j] += off[i, j]
    q = _neighbour_terms(p, h, lam, adj_indptr, adj_indices, Ht, beta, seq, k)
    if simplex and q > 0.0 and _project_empty(c, beta, q, free, total, eps, hn):
        return
    if UNROLLED_SIMPLEX and simplex and not has_fixed and solve_free_simplex(c, beta, q, total, eps,
                                                                          rtol, hn, kt):
        return
    solve_column(c, beta, q, free, total, eps, simplex, rtol, hn)


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _update_free(p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht, eps, rtol, c,
                 beta, free, hn, seq, off, kt):  # fmt: skip
    """:func:`_update_pixel` under the H simplex without fixed entries (``free`` all True on
    entry and exit): the same surrogate, sums and solve; the empty pixel's closed form and
    :func:`._simplex.solve_column` are called (:func:`_empty_or_general`), not inlined."""
    k = len(kt)
    for j in range(k):
        hn[j] = h[j]
    q = _surrogate_free(p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht, c,
                        beta, seq, off, kt)  # fmt: skip
    if _no_counts(c, kt) and q > 0.0:
        _empty_or_general(c, beta, q, free, eps, rtol, hn)
    elif not solve_free_simplex(c, beta, q, 1.0, eps, rtol, hn, kt):
        solve_column(c, beta, q, free, 1.0, eps, True, rtol, hn)


@njit(cache=True, fastmath=_FASTMATH)
def _empty_or_general(c, beta, q, free, eps, rtol, hn):
    """A pixel without counts (q > 0) under the simplex, every entry free: the closed form of
    :func:`_project_empty`, else :func:`._simplex.solve_column` (as :func:`_update_pixel`)."""
    if not _project_empty(c, beta, q, free, 1.0, eps, hn):
        solve_column(c, beta, q, free, 1.0, eps, True, rtol, hn)


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _project_empty(c, beta, q, free, total, eps, hn):
    """The surrogate's exact minimiser for a pixel without counts (every ``c`` zero), q > 0,
    under the simplex; returns False (nothing written) when it does not apply.

    Without counts the surrogate of the free entries is ``Σ β_j x_j + q x_j²``: its minimiser on
    ``{x ≥ ε, Σ x = T}`` is the Euclidean projection of ``u = −β / (2q)`` on that set,
    ``x_j = max(u_j − ν, ε)``, found exactly by floor-and-rescale rounds (the entries that fall
    below ε in a round stay there at the solution; at most k rounds): no square roots or Newton
    steps (:func:`._simplex.solve_column` reaches the same point to its tolerance ``rtol``).
    """
    k = c.shape[0]
    if k > 62:
        return False
    for j in range(k):
        if free[j] and c[j] != 0.0:
            return False
    inv2q = 0.5 / q
    fl = 0  # bit j: entry j floored
    nfl = 0
    nu = 0.0
    done = False
    for _ in range(k + 1):
        # ν over the entries not floored: Σ (u_j − ν) = T − ε·(number floored)
        usum = 0.0
        nact = 0
        for j in range(k):
            if free[j] and not (fl >> j) & 1:
                usum -= beta[j] * inv2q
                nact += 1
        if nact == 0 or total <= 0.0:
            return False
        nu = (usum - (total - eps * nfl)) / nact
        new = False
        for j in range(k):
            if free[j] and not (fl >> j) & 1 and -beta[j] * inv2q - nu < eps:
                fl |= 1 << j
                nfl += 1
                new = True
        if not new:
            done = True
            break
    if not done:
        return False
    s = 0.0
    for j in range(k):
        if free[j]:
            hn[j] = eps if (fl >> j) & 1 else -beta[j] * inv2q - nu
            s += hn[j]
    fix_sum(hn, free, total, eps, s)  # the last rounding error of the sum, as solve_column
    return True


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _reg_loss(p, h, mu, eps_reg, lam, adj_indptr, adj_indices, Ht, lfac):
    """(Σ_k μ_k log(h_k + ε_k), lfac·λ Σ_{q∈N(p)} ‖h − h_q‖²) of pixel p (``eps_reg``: the
    per-phase ε_k, see :mod:`._prior`).

    ``lfac`` is 1/4 when every pixel counts its edges (each edge half from each end), 1/2 for
    the first colour of a red-black sweep (every edge from its colour-0 end) and 0 for the
    second.
    """
    k = h.shape[0]
    lp = 0.0
    for j in range(k):
        lp += mu[j] * np.log(h[j] + eps_reg[j])
    ll = 0.0
    if lam > 0.0 and lfac > 0.0:
        for t in range(adj_indptr[p], adj_indptr[p + 1]):
            qn = adj_indices[t]
            for j in range(k):
                d = h[j] - Ht[qn, j]
                ll += d * d
        ll *= lfac * lam
    return lp, ll


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _model_at(D, ch, h, k):
    """The model (D h) at channel ``ch``, floored at ``_TINY``."""
    m = 0.0
    for j in range(k):
        m += D[ch, j] * h[j]
    if m < _TINY:
        m = _TINY
    return m


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_sparse(i0, i1, indices, counts, D, h, a, inv_scale, kt):
    """``a += Dᵀ r`` over nonzeros ``i0:i1`` with ``r = y' / (D h)``."""
    k = len(kt)
    if SCALAR_SUMS and k <= 4:
        h0, h1, h2, h3 = _h4(h, kt)
        a0 = a1 = a2 = a3 = 0.0
        for t in range(i0, i1):
            ch = indices[t]
            r = counts[t] * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
            a0, a1, a2, a3 = _axpy4(D, ch, r, a0, a1, a2, a3, kt)
        _add4(a, a0, a1, a2, a3, kt)
        return
    for t in range(i0, i1):
        ch = indices[t]
        m = _model_at(D, ch, h, k)
        r = counts[t] * inv_scale / m
        for j in range(k):
            a[j] += D[ch, j] * r


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _log_product_step(yc, r, prod, pexp, lraw):
    """Fold ``yc · log r`` into (running product, its 2^200 exponent, plain sum of logs).

    Counts 1–3 multiply the product (one logarithm per pixel at the end instead of one per
    count); the product is rescaled by exact powers of two so it never over- or underflows.
    """
    if yc <= _PROD_MAX and yc == np.floor(yc) and _SMALL_R < r < _BIG_R:
        # r^yc from the bits of yc with selects, not jumps on the count (counts 1–3 mixed at
        # random mispredicted a jump about every other count); one logarithm per larger count.
        # With 2^-100 < r < 2^100 and the product within 2^±200, r^7 cannot overflow it.
        r2 = r * r
        f1 = r if (int(yc) & 1) else 1.0
        f2 = r2 if (int(yc) & 2) else 1.0
        f4 = r2 * r2 if (int(yc) & 4) else 1.0
        prod *= (f1 * f2) * f4
    else:
        lraw += yc * np.log(r)
    if prod > _BIG:
        prod *= _SMALL
        pexp += 1
    elif prod < _SMALL:
        prod *= _BIG
        pexp -= 1
    return prod, pexp, lraw


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_loss_sparse(i0, i1, indices, counts, D, h, a, inv_scale, kt):
    """As :func:`_ratios_sparse`; also returns ``Σ y log r`` (unscaled counts y)."""
    k = len(kt)
    lraw = 0.0
    prod = 1.0
    pexp = 0
    if SCALAR_SUMS and k <= 4:
        h0, h1, h2, h3 = _h4(h, kt)
        a0 = a1 = a2 = a3 = 0.0
        for t in range(i0, i1):
            ch = indices[t]
            yc = counts[t]
            r = yc * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
            prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
            a0, a1, a2, a3 = _axpy4(D, ch, r, a0, a1, a2, a3, kt)
        _add4(a, a0, a1, a2, a3, kt)
        return lraw + np.log(prod) + pexp * _LOG_BIG
    for t in range(i0, i1):
        ch = indices[t]
        yc = counts[t]
        m = _model_at(D, ch, h, k)
        r = yc * inv_scale / m
        prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
        for j in range(k):
            a[j] += D[ch, j] * r
    return lraw + np.log(prod) + pexp * _LOG_BIG


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _loss_at_sparse(i0, i1, indices, counts, D2, h, inv_scale, kt):
    """``Σ y log r`` over nonzeros ``i0:i1`` with ``r = y' / (D2 h)`` (the loss term of
    :func:`_ratios_loss_sparse` at another D, without the numerator)."""
    k = len(kt)
    lraw = 0.0
    prod = 1.0
    pexp = 0
    for t in range(i0, i1):
        ch = indices[t]
        yc = counts[t]
        m = _model_at(D2, ch, h, k)
        r = yc * inv_scale / m
        prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
    return lraw + np.log(prod) + pexp * _LOG_BIG


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _accumulate_sparse(i0, i1, indices, counts, D, hn, acc, inv_scale, kt):
    """``acc[c] += r_c · hn`` over nonzeros ``i0:i1`` with ``r = y' / (D hn)``."""
    k = len(kt)
    if SCALAR_SUMS and k <= 4:
        h0, h1, h2, h3 = _h4(hn, kt)
        for t in range(i0, i1):
            ch = indices[t]
            r = counts[t] * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
            _scatter4(acc, ch, r, h0, h1, h2, h3, kt)
        return
    for t in range(i0, i1):
        ch = indices[t]
        m = _model_at(D, ch, hn, k)
        r = counts[t] * inv_scale / m
        for j in range(k):
            acc[ch, j] += r * hn[j]


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_pairs(i0, i1, indices, counts, D, h, a, inv_scale, kt):
    """:func:`_ratios_sparse` with the counts two at a time (:data:`PAIRED_COUNTS`, k ≤ 4)."""
    h0, h1, h2, h3 = _h4(h, kt)
    a0 = a1 = a2 = a3 = 0.0
    t = i0
    while t + 1 < i1:
        ch = indices[t]
        cg = indices[t + 1]
        r = counts[t] * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
        s = counts[t + 1] * inv_scale / _model4(D, cg, h0, h1, h2, h3, kt)
        b0, b1, b2, b3 = _axpy4(D, ch, r, 0.0, 0.0, 0.0, 0.0, kt)
        b0, b1, b2, b3 = _axpy4(D, cg, s, b0, b1, b2, b3, kt)
        a0, a1, a2, a3 = a0 + b0, a1 + b1, a2 + b2, a3 + b3
        t += 2
    if t < i1:
        ch = indices[t]
        r = counts[t] * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
        a0, a1, a2, a3 = _axpy4(D, ch, r, a0, a1, a2, a3, kt)
    _add4(a, a0, a1, a2, a3, kt)


@njit(cache=True, inline="always")
def _row(indices, t, kt):
    """The flat offset ``k · indices[t]`` of a channel's row (unsigned; :data:`FLAT_ROWS`)."""
    return np.uint64(indices[t]) * np.uint64(len(kt))


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _model4f(Df, c, h0, h1, h2, h3, kt):
    """:func:`_model4` on the flat D (row at offset ``c``)."""
    k = len(kt)
    m = Df[c] * h0
    if k > 1:
        m += Df[c + _U1] * h1
    if k > 2:
        m += Df[c + _U2] * h2
    if k > 3:
        m += Df[c + _U3] * h3
    if m < _TINY:
        m = _TINY
    return m


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _axpy4f(Df, c, r, a0, a1, a2, a3, kt):
    """:func:`_axpy4` on the flat D."""
    k = len(kt)
    a0 += Df[c] * r
    if k > 1:
        a1 += Df[c + _U1] * r
    if k > 2:
        a2 += Df[c + _U2] * r
    if k > 3:
        a3 += Df[c + _U3] * r
    return a0, a1, a2, a3


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _mul4f(Df, c, r, kt):
    """``r · D[row]`` on the flat D (0 beyond k)."""
    k = len(kt)
    return (
        Df[c] * r,
        Df[c + _U1] * r if k > 1 else 0.0,
        Df[c + _U2] * r if k > 2 else 0.0,
        Df[c + _U3] * r if k > 3 else 0.0,
    )


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _scatter4f(accf, c, r, h0, h1, h2, h3, kt):
    """:func:`_scatter4` on the flat accumulator."""
    k = len(kt)
    accf[c] += r * h0
    if k > 1:
        accf[c + _U1] += r * h1
    if k > 2:
        accf[c + _U2] += r * h2
    if k > 3:
        accf[c + _U3] += r * h3


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_flat(i0, i1, indices, counts, Df, h, a, inv_scale, kt):
    """:func:`_ratios_sparse` (k ≤ 4) on the flat D (:data:`FLAT_ROWS`)."""
    h0, h1, h2, h3 = _h4(h, kt)
    a0 = a1 = a2 = a3 = 0.0
    for t in range(np.uint64(i0), np.uint64(i1)):
        c = _row(indices, t, kt)
        r = counts[t] * inv_scale / _model4f(Df, c, h0, h1, h2, h3, kt)
        a0, a1, a2, a3 = _axpy4f(Df, c, r, a0, a1, a2, a3, kt)
    _add4(a, a0, a1, a2, a3, kt)


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_pairs_flat(i0, i1, indices, counts, Df, h, a, inv_scale, kt):
    """:func:`_ratios_pairs` on the flat D (:data:`FLAT_ROWS`)."""
    h0, h1, h2, h3 = _h4(h, kt)
    a0 = a1 = a2 = a3 = 0.0
    t = np.uint64(i0)
    end = np.uint64(i1)
    while t + _U1 < end:
        c = _row(indices, t, kt)
        g = _row(indices, t + _U1, kt)
        r = counts[t] * inv_scale / _model4f(Df, c, h0, h1, h2, h3, kt)
        s = counts[t + _U1] * inv_scale / _model4f(Df, g, h0, h1, h2, h3, kt)
        # the pair's first terms as products (not added to zeros: 0 + x is x, yet LLVM may not
        # drop the add without the no-signed-zeros flag), then the second added to them
        b0, b1, b2, b3 = _mul4f(Df, c, r, kt)
        b0, b1, b2, b3 = _axpy4f(Df, g, s, b0, b1, b2, b3, kt)
        a0, a1, a2, a3 = a0 + b0, a1 + b1, a2 + b2, a3 + b3
        t += _U2
    if t < end:
        c = _row(indices, t, kt)
        r = counts[t] * inv_scale / _model4f(Df, c, h0, h1, h2, h3, kt)
        a0, a1, a2, a3 = _axpy4f(Df, c, r, a0, a1, a2, a3, kt)
    _add4(a, a0, a1, a2, a3, kt)


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_loss_flat(i0, i1, indices, counts, Df, h, a, inv_scale, kt):
    """:func:`_ratios_loss_sparse` (k ≤ 4) on the flat D (:data:`FLAT_ROWS`)."""
    lraw = 0.0
    prod = 1.0
    pexp = 0
    h0, h1, h2, h3 = _h4(h, kt)
    a0 = a1 = a2 = a3 = 0.0
    for t in range(np.uint64(i0), np.uint64(i1)):
        c = _row(indices, t, kt)
        yc = counts[t]
        r = yc * inv_scale / _model4f(Df, c, h0, h1, h2, h3, kt)
        prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
        a0, a1, a2, a3 = _axpy4f(Df, c, r, a0, a1, a2, a3, kt)
    _add4(a, a0, a1, a2, a3, kt)
    return lraw + np.log(prod) + pexp * _LOG_BIG


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _accumulate_flat(i0, i1, indices, counts, Df, hn, accf, inv_scale, kt):
    """:func:`_accumulate_sparse` (k ≤ 4) on the flat D and accumulator (:data:`FLAT_ROWS`)."""
    h0, h1, h2, h3 = _h4(hn, kt)
    for t in range(np.uint64(i0), np.uint64(i1)):
        c = _row(indices, t, kt)
        r = counts[t] * inv_scale / _model4f(Df, c, h0, h1, h2, h3, kt)
        _scatter4f(accf, c, r, h0, h1, h2, h3, kt)


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_dense(i, dense, D, h, a, inv_scale, kt):
    """Dense counterpart of :func:`_ratios_sparse` (zero counts skipped)."""
    k = len(kt)
    if SCALAR_SUMS and k <= 4:
        h0, h1, h2, h3 = _h4(h, kt)
        a0 = a1 = a2 = a3 = 0.0
        for ch in range(dense.shape[1]):
            yc = dense[i, ch]
            if yc == 0:
                continue
            r = yc * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
            a0, a1, a2, a3 = _axpy4(D, ch, r, a0, a1, a2, a3, kt)
        _add4(a, a0, a1, a2, a3, kt)
        return
    for ch in range(dense.shape[1]):
        yc = dense[i, ch]
        if yc == 0:
            continue
        m = _model_at(D, ch, h, k)
        r = yc * inv_scale / m
        for j in range(k):
            a[j] += D[ch, j] * r


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _ratios_loss_dense(i, dense, D, h, a, inv_scale, kt):
    """Dense counterpart of :func:`_ratios_loss_sparse`."""
    k = len(kt)
    lraw = 0.0
    prod = 1.0
    pexp = 0
    if SCALAR_SUMS and k <= 4:
        h0, h1, h2, h3 = _h4(h, kt)
        a0 = a1 = a2 = a3 = 0.0
        for ch in range(dense.shape[1]):
            yc = dense[i, ch]
            if yc == 0:
                continue
            r = yc * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
            prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
            a0, a1, a2, a3 = _axpy4(D, ch, r, a0, a1, a2, a3, kt)
        _add4(a, a0, a1, a2, a3, kt)
        return lraw + np.log(prod) + pexp * _LOG_BIG
    for ch in range(dense.shape[1]):
        yc = dense[i, ch]
        if yc == 0:
            continue
        m = _model_at(D, ch, h, k)
        r = yc * inv_scale / m
        prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
        for j in range(k):
            a[j] += D[ch, j] * r
    return lraw + np.log(prod) + pexp * _LOG_BIG


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _loss_at_dense(i, dense, D2, h, inv_scale, kt):
    """Dense counterpart of :func:`_loss_at_sparse`."""
    k = len(kt)
    lraw = 0.0
    prod = 1.0
    pexp = 0
    for ch in range(dense.shape[1]):
        yc = dense[i, ch]
        if yc == 0:
            continue
        m = _model_at(D2, ch, h, k)
        r = yc * inv_scale / m
        prod, pexp, lraw = _log_product_step(yc, r, prod, pexp, lraw)
    return lraw + np.log(prod) + pexp * _LOG_BIG


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _accumulate_dense(i, dense, D, hn, acc, inv_scale, kt):
    """Dense counterpart of :func:`_accumulate_sparse`."""
    k = len(kt)
    if SCALAR_SUMS and k <= 4:
        h0, h1, h2, h3 = _h4(hn, kt)
        for ch in range(dense.shape[1]):
            yc = dense[i, ch]
            if yc == 0:
                continue
            r = yc * inv_scale / _model4(D, ch, h0, h1, h2, h3, kt)
            _scatter4(acc, ch, r, h0, h1, h2, h3, kt)
        return
    for ch in range(dense.shape[1]):
        yc = dense[i, ch]
        if yc == 0:
            continue
        m = _model_at(D, ch, hn, k)
        r = yc * inv_scale / m
        for j in range(k):
            acc[ch, j] += r * hn[j]


@njit(cache=True, inline="always")
def _hold_pixel(i, h, hn, Ht_out, Hy_out, extrap, kt):
    """A pixel held by the active set (:data:`esmpy_hs.nmf._solver.ACTIVE_SET`): its new H and
    its extrapolation are its H entering the pass (``hn`` receives it for the sums)."""
    k = len(kt)
    for j in range(k):
        hn[j] = h[j]
        Ht_out[i, j] = h[j]
        if extrap:
            Hy_out[i, j] = h[j]


@njit(cache=True, inline="always")
def _largest_move(hn, h, kt):
    """``max_j |hn_j − h_j|``: how far the update moved the pixel (float64)."""
    d = 0.0
    for j in range(len(kt)):
        e = abs(np.float64(hn[j]) - np.float64(h[j]))
        if e > d:
            d = e
    return d


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _surrogate_free(p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht, c, beta,
                    seq, off, kt):  # fmt: skip
    """The surrogate of pixel p (chunk index i) under the H simplex without fixed entries (the
    first half of :func:`_update_free`): writes ``c`` and ``beta``, returns q. ``off``: see
    :func:`h_pass_sparse`."""
    k = len(kt)
    has_off = off.shape[0] > 0
    for j in range(k):
        c[j] = h[j] * a[j]
        beta[j] = colsum[j] + mu[j] / (h[j] + eps_reg[j])
        if has_off:
            beta[j] += off[i, j]
    return _neighbour_terms(p, h, lam, adj_indptr, adj_indices, Ht, beta, seq, k)


@njit(cache=True, inline="always")
def _no_counts(c, kt):
    """Every ``c`` zero (a pixel without counts)."""
    empty = True
    for j in range(len(kt)):
        if c[j] != 0.0:
            empty = False
    return empty


@njit(cache=True, inline="always")
def _batched(simplex, fixed, update_h, want_loss, kt):
    """Does a sparse pass take :func:`_sparse_block_free` (:data:`BATCHED_SOLVE`)?"""
    return (BATCHED_SOLVE and FREE_SIMPLEX_PATH and UNROLLED_SIMPLEX and FLAT_ROWS
            and PAIRED_COUNTS and SCALAR_SUMS and len(kt) <= 4 and simplex
            and fixed.shape[0] == 0 and update_h and not want_loss)  # fmt: skip


@njit(cache=True, fastmath=_FASTMATH)
def _sparse_block_free(
    b, nblocks, npx, indptr, indices, counts, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    eps, rtol, accumulate, blk_acc, hsum_b, loss_b, kt, Hy_out, beta_x, moved, skip_tol, off,
):  # fmt: skip
    """:func:`_sparse_block` for a pass that updates H under the H simplex without fixed
    entries and evaluates no loss (:data:`BATCHED_SOLVE`): each stripe's pixels in three rounds,
    each in pixel order — the first sweep and the surrogate of every pixel; the surrogates
    solved together (:func:`._simplex.solve_free_simplex_rows`); the stores, the
    extrapolation, the moves and the ``R Hᵀ`` sweep. The arithmetic of :func:`_sparse_block`
    pixel by pixel, and its sums in the same pixel order (see :data:`BATCHED_SOLVE` on the last
    units). A function of its own: in
    :func:`_sparse_block` the rounds' code slowed its loss sweeps by about 15 %. For k ≤ 4 only
    (the sweeps of :data:`PAIRED_COUNTS` and :data:`FLAT_ROWS`; see :func:`_batched`)."""
    k = len(kt)  # compile-time constant (see the kernel's docstring)
    Df = D.reshape(D.size)  # flat views (FLAT_ROWS)
    accf = blk_acc.reshape(blk_acc.size)
    blk_acc[:] = 0.0
    hs = np.zeros(k)
    h = np.empty(k)
    y = np.empty(k)
    floored = np.empty(k, dtype=np.bool_)
    extrap = Hy_out.shape[0] > 0
    a = np.empty(k)
    hn = np.empty(k)
    c = np.empty(k)
    beta = np.empty(k)
    free = np.ones(k, dtype=np.bool_)
    seq = phase >= 0
    track = moved.shape[0] > 0
    skipping = track and skip_tol > 0.0
    H0 = np.empty((_STRIPE, k))  # the stripe's entering h
    HS = np.empty((_STRIPE, k))  # its pixels without counts, solved in the first round
    CB = np.empty((_STRIPE, k))  # the surrogates to solve together, in rows
    BB = np.empty((_STRIPE, k))
    QB = np.empty(_STRIPE)
    OB = np.empty((_STRIPE, k))
    ok = np.empty(_STRIPE, dtype=np.bool_)
    work = np.empty((5, _STRIPE))
    kind = np.empty(_STRIPE, dtype=np.int64)  # 0 other colour, 1 held, 2 solved alone, 3 rows
    lane = np.empty(_STRIPE, dtype=np.int64)
    for st in range(b, (npx + _STRIPE - 1) // _STRIPE, nblocks):
        s0 = st * _STRIPE
        s1 = min(s0 + _STRIPE, npx)
        nsolve = 0
        for i in range(s0, s1):
            pos = i - s0
            p = start + i
            if seq and colour[p] != phase:
                for j in range(k):
                    Ht_out[i, j] = Ht[p, j]
                kind[pos] = 0
                continue
            for j in range(k):
                h[j] = Ht[p, j]
                a[j] = 0.0
                H0[pos, j] = h[j]
            if skipping and moved[i] < skip_tol:
                _hold_pixel(i, h, hn, Ht_out, Hy_out, extrap, kt)
                kind[pos] = 1
                continue
            _ratios_pairs_flat(indptr[i], indptr[i + 1], indices, counts, Df, h, a, inv_scale,
                               kt)  # fmt: skip
            q = _surrogate_free(p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices,
                                Ht, c, beta, seq, off, kt)  # fmt: skip
            if _no_counts(c, kt) and q > 0.0:
                for j in range(k):
                    hn[j] = h[j]
                _empty_or_general(c, beta, q, free, eps, rtol, hn)
                for j in range(k):
                    HS[pos, j] = hn[j]
                kind[pos] = 2
            else:
                for j in range(k):
                    CB[nsolve, j] = c[j]
                    BB[nsolve, j] = beta[j]
                    OB[nsolve, j] = h[j]
                QB[nsolve] = q
                lane[pos] = nsolve
                nsolve += 1
                kind[pos] = 3
        if nsolve > 0:
            solve_free_simplex_rows(CB, BB, QB, nsolve, eps, rtol, OB, ok, work, kt)
            for m in range(nsolve):
                if not ok[m]:  # as _update_free: the general solver from the entering h
                    solve_column(CB[m], BB[m], QB[m], free, 1.0, eps, True, rtol, OB[m])
        for i in range(s0, s1):
            pos = i - s0
            kd = kind[pos]
            if kd == 0:
                continue
            for j in range(k):
                h[j] = H0[pos, j]
            if kd == 1:
                for j in range(k):
                    hn[j] = h[j]
            else:
                for j in range(k):
                    Ht_out[i, j] = HS[pos, j] if kd == 2 else OB[lane[pos], j]
                    hn[j] = Ht_out[i, j]  # accumulate with the stored (rounded) value
                if extrap:
                    _extrapolate_pixel(hn, h, beta_x, eps, y, floored)
                    for j in range(k):
                        Hy_out[i, j] = y[j]
                if track:
                    moved[i] = _largest_move(hn, h, kt)
            if accumulate:
                for j in range(k):
                    hs[j] += hn[j]
                _accumulate_flat(indptr[i], indptr[i + 1], indices, counts, Df, hn, accf,
                                 inv_scale, kt)  # fmt: skip
    for j in range(k):
        hsum_b[j] = hs[j]
    for j in range(loss_b.shape[0]):
        loss_b[j] = 0.0


@njit(cache=True, fastmath=_FASTMATH)
def _sparse_block(
    b, nblocks, npx, indptr, indices, counts, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
    blk_acc, hsum_b, loss_b, kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
):  # fmt: skip
    """Block ``b`` of ``nblocks``, its stripes serially (see :func:`h_pass_sparse`)."""
    k = len(kt)  # compile-time constant (see the kernel's docstring)
    pairs = PAIRED_COUNTS and SCALAR_SUMS and k <= 4
    flat = FLAT_ROWS and SCALAR_SUMS and k <= 4
    Df = D.reshape(D.size)  # flat views (FLAT_ROWS)
    accf = blk_acc.reshape(blk_acc.size)
    blk_acc[:] = 0.0
    hs = np.zeros(k)
    ls = np.zeros(6)
    h = np.empty(k)
    y = np.empty(k)
    floored = np.empty(k, dtype=np.bool_)
    extrap = Hy_out.shape[0] > 0
    two = want_loss and D2.shape[0] > 0
    a = np.empty(k)
    hn = np.empty(k)
    c = np.empty(k)
    beta = np.empty(k)
    free = np.empty(k, dtype=np.bool_)
    seq = phase >= 0
    lfac = 0.25 if not seq else (0.5 if phase == 0 else 0.0)
    track = update_h and moved.shape[0] > 0
    skipping = track and skip_tol > 0.0 and not want_loss
    free_path = FREE_SIMPLEX_PATH and UNROLLED_SIMPLEX and simplex and fixed.shape[0] == 0
    free[:] = True
    for st in range(b, (npx + _STRIPE - 1) // _STRIPE, nblocks):
        for i in range(st * _STRIPE, min((st + 1) * _STRIPE, npx)):
            p = start + i
            if seq and colour[p] != phase:
                # the other colour: carried over unchanged (in place when Ht_out is Ht's rows)
                if update_h:
                    for j in range(k):
                        Ht_out[i, j] = Ht[p, j]
                continue
            for j in range(k):
                h[j] = Ht[p, j]
                a[j] = 0.0
            i0 = indptr[i]
            i1 = indptr[i + 1]
            if skipping and moved[i] < skip_tol:
                # an abundance that stopped moving: held (no ratio sweep, no solve)
                _hold_pixel(i, h, hn, Ht_out, Hy_out, extrap, kt)
            elif update_h or want_loss:
                if pairs and not want_loss:
                    if flat:
                        _ratios_pairs_flat(i0, i1, indices, counts, Df, h, a, inv_scale, kt)
                    else:
                        _ratios_pairs(i0, i1, indices, counts, D, h, a, inv_scale, kt)
                elif want_loss:
                    if flat:
                        ls[0] += inv_scale * _ratios_loss_flat(i0, i1, indices, counts, Df, h,
                                                               a, inv_scale, kt)  # fmt: skip
                    else:
                        ls[0] += inv_scale * _ratios_loss_sparse(i0, i1, indices, counts, D, h,
                                                                 a, inv_scale, kt)  # fmt: skip
                    if two:
                        ls[4] += inv_scale * _loss_at_sparse(i0, i1, indices, counts, D2, h,
                                                             inv_scale, kt)  # fmt: skip
                elif flat:
                    _ratios_flat(i0, i1, indices, counts, Df, h, a, inv_scale, kt)
                else:
                    _ratios_sparse(i0, i1, indices, counts, D, h, a, inv_scale, kt)
                if want_loss:
                    for j in range(k):
                        ls[1] += colsum[j] * h[j]
                        if two:
                            ls[5] += colsum2[j] * h[j]
                    lp, ll = _reg_loss(p, h, mu, eps_reg, lam, adj_indptr, adj_indices, Ht,
                                      lfac)  # fmt: skip
                    ls[2] += lp
                    ls[3] += ll
                if update_h:
                    if free_path:
                        _update_free(p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr,
                                     adj_indices, Ht, eps, rtol, c, beta, free, hn, seq, off,
                                     kt)  # fmt: skip
                    else:
                        _update_pixel(
                            p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht,
                            simplex, fixed, eps, rtol, c, beta, free, hn, seq, off, kt,
                        )  # fmt: skip
                    for j in range(k):
                        Ht_out[i, j] = hn[j]
                        hn[j] = Ht_out[i, j]  # accumulate with the stored (rounded) value
                    if extrap:
                        _extrapolate_pixel(hn, h, beta_x, eps, y, floored)
                        for j in range(k):
                            Hy_out[i, j] = y[j]
                    if track:
                        moved[i] = _largest_move(hn, h, kt)
                else:
                    for j in range(k):
                        hn[j] = h[j]
            else:
                for j in range(k):
                    hn[j] = h[j]
            if accumulate:
                for j in range(k):
                    hs[j] += hn[j]
                if flat:
                    _accumulate_flat(i0, i1, indices, counts, Df, hn, accf, inv_scale, kt)
                else:
                    _accumulate_sparse(i0, i1, indices, counts, D, hn, blk_acc, inv_scale, kt)
    for j in range(k):
        hsum_b[j] = hs[j]
    for j in range(loss_b.shape[0]):
        loss_b[j] = ls[j]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def h_pass_sparse(
    indptr, indices, counts, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
    acc, hsum, loss, kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
):  # fmt: skip
    """Fused pass over pixels ``start … start + len(indptr) − 2`` stored sparse by pixel.

    Parameters
    ----------
    indptr : int64[npx + 1]
        Chunk pointers into ``indices``/``counts`` (absolute positions: a slice of the full
        ``indptr`` can be passed with the full ``indices``/``counts``).
    indices : uint16[:] or int32[:]
        Channel indices.
    counts : uint16[:] or float[:]
        Counts (unscaled).
    D : float[n, k]
        Phase spectra G·W (scaled units).
    colsum : float64[k]
        ``1ᵀ D``.
    Ht : float[p_total, k]
        Previous H (all pixels: the Laplacian reads neighbours).
    start : int
        Global index of the chunk's first pixel.
    Ht_out : float[npx, k]
        New H of the chunk (written only when ``update_h``; may alias nothing in ``Ht``
        but in phase 1, see ``phase``).
    inv_scale : float
        1 / data scale.
    mu : float64[k]
        Log-prior weights.
    eps_reg : float64[k]
        The prior's ε per phase (ε, or ε / r_k with the prior on the counts: :mod:`._prior`).
    lam : float
        λ.
    adj_indptr, adj_indices : int64[p_total + 1], int32[:]
        Pixel graph (global indices).
    colour : uint8[p_total] or uint8[0]
        Colour (0 or 1) of every pixel in a 2-colouring of the pixel graph (no edge joins two
        pixels of one colour); read only when ``phase`` ≥ 0.
    phase : int
        −1: every pixel moves at once (the Laplacian majorised per edge). 0 or 1: one half of a
        red-black sweep: only the pixels of colour ``phase`` move, with their neighbours held at
        their values in ``Ht`` (the Laplacian part of their surrogate is exact); the others are
        copied from ``Ht`` to ``Ht_out``. Phase 1 reads the output of phase 0 (``Ht_out`` may
        then be rows of ``Ht`` itself: a pixel of colour 1 reads only its own row and those of
        colour 0). The loss parts of both phases add up to the loss of the iterate entering
        phase 0 (phase 0 counts every edge from its colour-0 end).
    simplex : bool
        H simplex (Σ_k h_kp = 1).
    fixed : float[npx, k] or float[0, k]
        Fixed entries of the chunk (NaN = free); an empty array when none are fixed.
    eps : float
        Lower bound of H.
    rtol : float
        Tolerance of the simplex sums.
    update_h, accumulate, want_loss : bool
        Update H / accumulate ``R Hᵀ`` and ``H 1`` with the new H / compute loss parts of the
        entering iterate.
    acc : float[nblocks, n, k]
        Per-block ``R Hᵀ`` (zeroed here).
    hsum : float64[nblocks, k]
        Per-block ``H 1`` of the new H (zeroed here).
    loss : float64[nblocks, 4] or float64[nblocks, 6]
        Per-block loss parts (zeroed here); see the module docstring. Six columns with ``D2``:
        columns 4 and 5 are the parts 0 and 1 at ``D2`` (parts 2 and 3 do not depend on D).
    kt : tuple of k ints
        ``(0,) * k``: makes k a compile-time constant (one compiled version per k), which lets
        LLVM unroll the loops over components — twice as fast as a run-time k.
    Hy_out : float[npx, k] or float[0, k]
        With rows (and ``update_h``, H simplex, no fixed entries): receives the extrapolation
        of every updated pixel, ``hn + beta_x (hn − h)`` projected on the simplex (the rows of
        :func:`extrapolate_simplex`, to the last unit) — the start of the next pass, made while
        the pixel's values are in registers instead of in a pass of its own. Rows of the
        other colour of a red-black phase are not written (their phase writes them).
    beta_x : float
        The extrapolation's β.
    D2 : float[n, k] or float[0, k]
        With rows (and ``want_loss``): a second D at which the loss parts 0 and 1 of the
        entering H are also computed (``loss[:, 4:6]``), e.g. the objective of the previous
        G at the iterate where the solver replaced G, in the pass that evaluates the new one.
    colsum2 : float64[k]
        ``1ᵀ D2`` (any length-k array when D2 has no rows).
    moved : float64[npx] or float64[0]
        With rows (and ``update_h``): the active set of the H step. Receives, for every pixel
        the pass updates, the largest move of its entries, ``max_j |h⁺_j − h_j|``; with
        ``skip_tol`` > 0 and no loss asked, a pixel whose entry is below ``skip_tol`` is held
        instead: its new H (and its extrapolation in ``Hy_out``) is its H entering the pass,
        without the ratio sweep and the solve; its ``R Hᵀ`` and ``H 1`` are accumulated as
        any pixel's. Without rows every pixel is updated (the pass before).
    skip_tol : float
        See ``moved``.
    off : float64[npx, k] or float64[0, k]
        With rows: added to the linear coefficient of every updated pixel's surrogate (chunk
        row i for pixel ``start + i``); the smoothing of the model's counts puts its part
        that the Laplacian's form leaves out there (:mod:`._model_smoothing`). Without rows:
        nothing is added (the pass before).
    """
    npx = indptr.shape[0] - 1
    nblocks = acc.shape[0]
    if _batched(simplex, fixed, update_h, want_loss, kt):
        for b in prange(nblocks):
            _sparse_block_free(
                b, nblocks, npx, indptr, indices, counts, D, colsum, Ht, start, Ht_out,
                inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
                eps, rtol, accumulate, acc[b], hsum[b], loss[b], kt, Hy_out, beta_x, moved,
                skip_tol, off,
            )  # fmt: skip
        return
    for b in prange(nblocks):
        _sparse_block(
            b, nblocks, npx,
            indptr, indices, counts, D, colsum, Ht, start, Ht_out,
            inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
            simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
            acc[b], hsum[b], loss[b], kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
        )  # fmt: skip


@njit(cache=True, fastmath=_FASTMATH)
def _dense_block(
    b, nblocks, npx, dense, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
    blk_acc, hsum_b, loss_b, kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
):  # fmt: skip
    """Block ``b`` of ``nblocks``, its stripes serially (see :func:`h_pass_dense`)."""
    k = len(kt)  # compile-time constant (see the kernel's docstring)
    blk_acc[:] = 0.0
    hs = np.zeros(k)
    ls = np.zeros(6)
    h = np.empty(k)
    y = np.empty(k)
    floored = np.empty(k, dtype=np.bool_)
    extrap = Hy_out.shape[0] > 0
    two = want_loss and D2.shape[0] > 0
    a = np.empty(k)
    hn = np.empty(k)
    c = np.empty(k)
    beta = np.empty(k)
    free = np.empty(k, dtype=np.bool_)
    seq = phase >= 0
    lfac = 0.25 if not seq else (0.5 if phase == 0 else 0.0)
    track = update_h and moved.shape[0] > 0
    skipping = track and skip_tol > 0.0 and not want_loss
    free_path = FREE_SIMPLEX_PATH and UNROLLED_SIMPLEX and simplex and fixed.shape[0] == 0
    free[:] = True
    for st in range(b, (npx + _STRIPE - 1) // _STRIPE, nblocks):
        for i in range(st * _STRIPE, min((st + 1) * _STRIPE, npx)):
            p = start + i
            if seq and colour[p] != phase:
                # the other colour: carried over unchanged (in place when Ht_out is Ht's rows)
                if update_h:
                    for j in range(k):
                        Ht_out[i, j] = Ht[p, j]
                continue
            for j in range(k):
                h[j] = Ht[p, j]
                a[j] = 0.0
            if skipping and moved[i] < skip_tol:
                _hold_pixel(i, h, hn, Ht_out, Hy_out, extrap, kt)
            elif update_h or want_loss:
                if want_loss:
                    ls[0] += inv_scale * _ratios_loss_dense(i, dense, D, h, a, inv_scale, kt)
                    if two:
                        ls[4] += inv_scale * _loss_at_dense(i, dense, D2, h, inv_scale, kt)
                else:
                    _ratios_dense(i, dense, D, h, a, inv_scale, kt)
                if want_loss:
                    for j in range(k):
                        ls[1] += colsum[j] * h[j]
                        if two:
                            ls[5] += colsum2[j] * h[j]
                    lp, ll = _reg_loss(p, h, mu, eps_reg, lam, adj_indptr, adj_indices, Ht,
                                      lfac)  # fmt: skip
                    ls[2] += lp
                    ls[3] += ll
                if update_h:
                    if free_path:
                        _update_free(p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr,
                                     adj_indices, Ht, eps, rtol, c, beta, free, hn, seq, off,
                                     kt)  # fmt: skip
                    else:
                        _update_pixel(
                            p, i, h, a, colsum, mu, eps_reg, lam, adj_indptr, adj_indices, Ht,
                            simplex, fixed, eps, rtol, c, beta, free, hn, seq, off, kt,
                        )  # fmt: skip
                    for j in range(k):
                        Ht_out[i, j] = hn[j]
                        hn[j] = Ht_out[i, j]  # accumulate with the stored (rounded) value
                    if extrap:
                        _extrapolate_pixel(hn, h, beta_x, eps, y, floored)
                        for j in range(k):
                            Hy_out[i, j] = y[j]
                    if track:
                        moved[i] = _largest_move(hn, h, kt)
                else:
                    for j in range(k):
                        hn[j] = h[j]
            else:
                for j in range(k):
                    hn[j] = h[j]
            if accumulate:
                for j in range(k):
                    hs[j] += hn[j]
                _accumulate_dense(i, dense, D, hn, blk_acc, inv_scale, kt)
    for j in range(k):
        hsum_b[j] = hs[j]
    for j in range(loss_b.shape[0]):
        loss_b[j] = ls[j]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def h_pass_dense(
    dense, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
    acc, hsum, loss, kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
):  # fmt: skip
    """As :func:`h_pass_sparse` for counts stored dense, ``dense[i, c]`` (chunk pixels × channels).

    Zero counts are skipped, so the arithmetic (and the result) is the same as the sparse pass.
    """
    npx = dense.shape[0]
    nblocks = acc.shape[0]
    for b in prange(nblocks):
        _dense_block(
            b, nblocks, npx,
            dense, D, colsum, Ht, start, Ht_out,
            inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
            simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
            acc[b], hsum[b], loss[b], kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
        )  # fmt: skip


@njit(cache=True, fastmath=_FASTMATH)
def h_pass_sparse_serial(
    indptr, indices, counts, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
    acc, hsum, loss, kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
):  # fmt: skip
    """:func:`h_pass_sparse` on one thread (same blocks, bit-identical results).

    Used for small chunks, where waking a thread pool costs more than the work (milliseconds
    on a loaded machine).
    """
    npx = indptr.shape[0] - 1
    nblocks = acc.shape[0]
    if _batched(simplex, fixed, update_h, want_loss, kt):
        for b in range(nblocks):
            _sparse_block_free(
                b, nblocks, npx, indptr, indices, counts, D, colsum, Ht, start, Ht_out,
                inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
                eps, rtol, accumulate, acc[b], hsum[b], loss[b], kt, Hy_out, beta_x, moved,
                skip_tol, off,
            )  # fmt: skip
        return
    for b in range(nblocks):
        _sparse_block(
            b, nblocks, npx,
            indptr, indices, counts, D, colsum, Ht, start, Ht_out,
            inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
            simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
            acc[b], hsum[b], loss[b], kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
        )  # fmt: skip


@njit(cache=True, fastmath=_FASTMATH)
def h_pass_dense_serial(
    dense, D, colsum, Ht, start, Ht_out,
    inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
    simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
    acc, hsum, loss, kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
):  # fmt: skip
    """:func:`h_pass_dense` on one thread (same blocks, bit-identical results)."""
    npx = dense.shape[0]
    nblocks = acc.shape[0]
    for b in range(nblocks):
        _dense_block(
            b, nblocks, npx,
            dense, D, colsum, Ht, start, Ht_out,
            inv_scale, mu, eps_reg, lam, adj_indptr, adj_indices, colour, phase,
            simplex, fixed, eps, rtol, update_h, accumulate, want_loss,
            acc[b], hsum[b], loss[b], kt, Hy_out, beta_x, D2, colsum2, moved, skip_tol, off,
        )  # fmt: skip


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _extrapolate_pixel(hn, h, beta, eps, y, floored):
    """``y = hn + β (hn − h)`` projected on the H simplex without fixed entries (float64
    scalars; the steps and the order of :func:`_extrapolate_rows` for one row). Inlined into
    the fast-math passes (a call per pixel cost more than the arithmetic at low dose): it
    agrees with :func:`extrapolate_simplex` to the last unit (tests/nmf/test_loop_switches.py)."""
    k = hn.shape[0]
    for j in range(k):
        v = np.float64(hn[j]) + beta * (np.float64(hn[j]) - np.float64(h[j]))
        y[j] = v if v > eps else eps
        floored[j] = False
    nfl = 0
    for _ in range(k + 1):
        msum = 0.0
        for j in range(k):
            if not floored[j]:
                msum += y[j]
        rest = 1.0 - eps * nfl
        fac = rest / max(msum, 1e-300) if msum > 0 else 1.0
        for j in range(k):
            if not floored[j]:
                y[j] = y[j] * fac
        new = False
        for j in range(k):
            if not floored[j] and y[j] < eps:
                floored[j] = True
                y[j] = eps
                nfl += 1
                new = True
        if not new:
            break


@njit(cache=True, inline="always")
def _extrapolate_rows(Hn, H, beta, eps, i0, i1, out, floored):
    k = Hn.shape[1]
    for i in range(i0, i1):
        for j in range(k):
            hn = np.float64(Hn[i, j])
            v = hn + beta * (hn - np.float64(H[i, j]))
            out[i, j] = v if v > eps else eps
            floored[j] = False
        nfl = 0
        for _ in range(k + 1):
            msum = 0.0
            for j in range(k):
                if not floored[j]:
                    msum += out[i, j]
            rest = 1.0 - eps * nfl
            fac = rest / max(msum, 1e-300) if msum > 0 else 1.0
            for j in range(k):
                if not floored[j]:
                    out[i, j] = out[i, j] * fac
            new = False
            for j in range(k):
                if not floored[j] and out[i, j] < eps:
                    floored[j] = True
                    out[i, j] = eps
                    nfl += 1
                    new = True
            if not new:
                break


@njit(parallel=True, cache=True)
def extrapolate_simplex(Hn, H, beta, eps, nblocks, out):
    """``out = Hn + β (Hn − H)`` projected on the H simplex without fixed entries, in float64.

    Row by row the same steps as :func:`esmpy_hs.nmf._solver.feasible_H` (no fixed entries):
    entries below ``eps`` are raised to it, then the entries not yet floored are scaled so the row
    sums to 1, those that fall below ``eps`` are floored and the rest scaled again, until none
    falls (at most k + 1 rounds). ``Hn`` and ``H`` (pixels × k) are of the working dtype, ``out``
    (pixels × k) is float64; rows are processed in ``nblocks`` parallel blocks (independent, so
    the result does not depend on the thread count). No fast-math: it agrees with the NumPy
    projection to 1 unit in the last place (the sums are taken in another order).
    """
    p, k = Hn.shape
    per = (p + nblocks - 1) // nblocks
    for b in prange(nblocks):
        floored = np.zeros(k, dtype=np.bool_)
        _extrapolate_rows(Hn, H, beta, eps, b * per, min(p, (b + 1) * per), out, floored)


@njit(cache=True)
def extrapolate_simplex_serial(Hn, H, beta, eps, out):
    """:func:`extrapolate_simplex` on one thread (small maps: no wake-up of the thread pool)."""
    _extrapolate_rows(Hn, H, beta, eps, 0, Hn.shape[0], out, np.zeros(Hn.shape[1], np.bool_))


@njit(cache=True)
def sum_blocks(acc, out):
    """``out = acc.sum(axis=0)`` in float64 (``acc``: blocks × m of the working dtype, ``out``:
    m, float64; the caller passes flat views of blocks × n × k and n × k): the blocks added
    one after the other in their order, as NumPy's reduction over the first axis does (the
    same sums, bit for bit), without its per-call cost (tens of µs per pass at 128², issue 18)."""
    nb, m = acc.shape
    for i in range(m):
        out[i] = np.float64(acc[0, i])
    for b in range(1, nb):
        for i in range(m):
            out[i] += np.float64(acc[b, i])

# ---------------------------------------------------------------------------- compaction
@njit(parallel=True, cache=True)
def scan_rows(X, nnz, lo, hi):
    """Per row of the integer array X (pixels × channels, any strides): the number of nonzero
    entries, the smallest and the largest value (``nnz``, ``lo``, ``hi``: int64, one per row).
    One parallel read of X (the NumPy steps it replaces read it four times)."""
    n, m = X.shape
    for i in prange(n):
        c = 0
        a = np.int64(X[i, 0]) if m > 0 else np.int64(0)
        b = a
        for j in range(m):
            v = np.int64(X[i, j])
            if v != 0:
                c += 1
            if v < a:
                a = v
            if v > b:
                b = v
        nnz[i] = c
        lo[i] = a
        hi[i] = b


@njit(parallel=True, cache=True)
def fill_rows(X, indptr, indices, counts):
    """The nonzero entries of X by row: ``indices``/``counts`` from ``indptr`` (see
    :func:`scan_rows` for the counts per row). Rows are independent: in parallel."""
    n, m = X.shape
    for i in prange(n):
        pos = indptr[i]
        for j in range(m):
            v = X[i, j]
            if v != 0:
                indices[pos] = j
                counts[pos] = v
                pos += 1

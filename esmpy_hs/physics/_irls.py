"""Compiled Poisson fits of the model check (issue #13, its cost). HyperSpy-free.

The model check runs about 10–25 small Poisson fits per map (≈ 2000 channels, 70–260
columns, 3–6 IRLS steps each) and as many weighted non-negative least-squares problems
from normal equations. Each is a few hundred microseconds of Python and NumPy calls around
little arithmetic; here each whole fit is one compiled call:

* :func:`irls` — :func:`esmpy_hs.physics.identification._fit_blocks`'s IRLS: weights
  ``1/μ``, the normal equations over the matrix's nonzero row blocks, the step's
  non-negative least squares (:func:`gram_nnls`), the same stopping rule
  (``max |ΔA a| / max |A a| < 1e-4``) and the same floors;
* :func:`gram_nnls` — ``min ½ xᵀMx − bᵀx`` with ``x ≥ 0`` off the signed (free) columns,
  after the same column scaling and ridge as
  :func:`esmpy_hs.physics.identification._gram_nnls`. The free columns are eliminated
  through the Cholesky factor of their block (the Schur complement), then a Lawson–Hanson
  active set over the non-negative columns, started from the previous IRLS step's set of
  positive amplitudes, with a Cholesky factor grown one column at a time. The problem is
  strictly convex (the ridge): its solution is unique, and any exact method reaches it; the
  figures differ from the LAPACK/SciPy path in the last digits only (the sums run in another
  order), measured in ``docs/validation.rst``.

Both return a status; on a failure (a factor that is not positive definite, an active set
that does not settle) the caller falls back to the NumPy/SciPy path.

The other functions here compute the same numbers as the NumPy expressions they replace, bit
for bit (only correctly rounded operations, summed in the same order; erf and log stay in
SciPy and NumPy): the line peaks' channel sums, the candidates' screen and the peak-shape
derivatives.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: channels per row block (as ``identification._ROW_BLOCK``)
BLOCK = 128


@njit(cache=True)
def column_norms(A):  # pragma: no cover - compiled
    """``np.sqrt((A ** 2).sum(axis=0))`` with the zero norms set to 1 (``A`` C-contiguous,
    (n, p)): the squares summed row by row, in the order of NumPy's reduction over the first
    axis of a C-contiguous array (not of another layout, whose columns NumPy sums pairwise),
    without the (n, p) array of squares; the same numbers."""
    n, p = A.shape
    s = np.zeros(p)
    up = np.uint64(p)  # (unsigned indices: no negative-index test, so the loop vectorises)
    for i in range(n):
        Ai = A[i]
        for j in range(up):
            s[j] += Ai[j] * Ai[j]
    for j in range(p):
        s[j] = np.sqrt(s[j])
        if s[j] <= 0.0:
            s[j] = 1.0
    return s


@njit(cache=True)
def _block_pointers(counts, n, block):  # pragma: no cover - compiled
    """``cptr`` and ``vptr`` of a pack (:func:`pack_blocks`) of n rows in blocks of ``block``
    from each block's number of kept columns ``counts``: the running sums of the columns and
    of the entries (rows × columns) of the blocks."""
    nb = counts.shape[0]
    cptr = np.zeros(nb + 1, dtype=np.int64)
    vptr = np.zeros(nb + 1, dtype=np.int64)
    for b in range(nb):
        rows = min(block, n - b * block)
        cptr[b + 1] = cptr[b] + counts[b]
        vptr[b + 1] = vptr[b] + rows * counts[b]
    return cptr, vptr


@njit(cache=True)
def _pack_flagged(A, norm, used, block):  # pragma: no cover - compiled
    """The packed blocks of ``A / norm`` from the flags ``used`` (blocks × columns: the
    column is not 0 in the block): ``(cptr, cols, vptr, vals)`` of :func:`pack_blocks`."""
    n, p = A.shape
    nb = used.shape[0]
    counts = np.zeros(nb, dtype=np.int64)
    for b in range(nb):
        for j in range(p):
            if used[b, j]:
                counts[b] += 1
    cptr, vptr = _block_pointers(counts, n, block)
    cols = np.empty(cptr[nb], dtype=np.int64)
    vals = np.empty(vptr[nb], dtype=np.float64)
    for b in range(nb):
        k = cptr[b]
        for j in range(p):
            if used[b, j]:
                cols[k] = j
                k += 1
        c = cptr[b + 1] - cptr[b]
        c0 = cptr[b]
        start = b * block
        rows = min(block, n - start)
        v = vptr[b]
        for r in range(rows):
            for t in range(c):
                j = cols[c0 + t]
                vals[v + r * c + t] = A[start + r, j] / norm[j]
    return cptr, cols, vptr, vals


@njit(cache=True)
def pack_blocks(A, norm, block):  # pragma: no cover - compiled
    """The nonzero columns of each block of ``block`` rows of ``A / norm`` (n, p; ``norm``
    per column > 0, the same quotients as NumPy's ``A / norm``) and their entries:
    ``(cptr, cols, vptr, vals)``; block b holds ``cols[cptr[b]:cptr[b+1]]`` and its rows
    × those columns row-major in ``vals[vptr[b]:vptr[b+1]]``. A column is kept in a block
    where ``A`` is not 0 there (one flag pass over ``A``, without a branch per entry; a
    quotient that underflows to 0 would only add exact zeros), and only the kept entries are
    divided."""
    n, p = A.shape
    nb = (n + block - 1) // block
    used = np.zeros((nb, p), dtype=np.uint8)
    for b in range(nb):
        u = used[b]
        for i in range(b * block, min(n, (b + 1) * block)):
            for j in range(p):
                u[j] |= A[i, j] != 0.0
    return _pack_flagged(A, norm, used, block)


#: :func:`pack_columns` sums a block of at most so many columns column by column
_NARROW = 2


@njit(cache=True)
def pack_columns(A, block):  # pragma: no cover - compiled
    """:func:`column_norms` of ``A`` and :func:`pack_blocks` of ``A`` by them, the same arrays
    in one call (the squares and the nonzero flags in one pass; each column's squares summed
    in the same row order, whether the pass runs row by row or, for a narrow block, column by
    column), for the model's column blocks that :func:`merge_packs` joins."""
    n, p = A.shape
    nb = (n + block - 1) // block
    norm = np.zeros(p)
    used = np.zeros((nb, p), dtype=np.uint8)
    up = np.uint64(p)  # (unsigned indices: no negative-index test, so the loop vectorises)
    if p <= _NARROW:  # a narrow block column by column (a row's loop would be all overhead)
        for j in range(p):
            s = 0.0
            for b in range(nb):
                nz = False
                for i in range(b * block, min(n, (b + 1) * block)):
                    x = A[i, j]
                    s += x * x
                    nz |= x != 0.0
                used[b, j] = nz
            norm[j] = s
    else:
        for b in range(nb):  # the squares and the flags in one pass, row by row
            u = used[b]
            for i in range(b * block, min(n, (b + 1) * block)):
                Ai = A[i]
                for j in range(up):
                    x = Ai[j]
                    norm[j] += x * x
                    u[j] |= x != 0.0
    for j in range(p):
        norm[j] = np.sqrt(norm[j])
        if norm[j] <= 0.0:
            norm[j] = 1.0
    cptr, cols, vptr, vals = _pack_flagged(A, norm, used, block)
    return norm, cptr, cols, vptr, vals


@njit(cache=True)
def merge_packs(n, block, cptrs, vptrs, cbase, vbase, coloff, cols_all,
                vals_all):  # pragma: no cover - compiled
    """:func:`pack_blocks`'s form of ``[A_1, …, A_K] / norm`` from the packs of its column
    blocks ``A_k / norm_k`` (K, each over the same n rows and ``block``-row blocks): pack k's
    ``cptr`` and ``vptr`` are ``cptrs[k]`` and ``vptrs[k]`` (K, nb + 1), its ``cols`` and
    ``vals`` start at ``cbase[k]`` and ``vbase[k]`` of ``cols_all`` and ``vals_all``, and its
    first column is column ``coloff[k]`` of the whole. A column of the whole is kept in a block
    where its block keeps it, in the same (ascending) order, and its entries are the same
    quotients (each column's norm is its own): the same arrays as ``pack_blocks`` of the
    whole matrix, the entries copied row by row, not computed again."""
    k_all = cptrs.shape[0]
    nb = cptrs.shape[1] - 1
    counts = np.zeros(nb, dtype=np.int64)
    for b in range(nb):
        for k in range(k_all):
            counts[b] += cptrs[k, b + 1] - cptrs[k, b]
    cptr, vptr = _block_pointers(counts, n, block)
    cols = np.empty(cptr[nb], dtype=np.int64)
    vals = np.empty(vptr[nb], dtype=np.float64)
    for b in range(nb):
        c = cptr[b + 1] - cptr[b]
        rows = min(block, n - b * block)
        at = 0  # the block's first column of pack k among the merged block's columns
        for k in range(k_all):
            ck = cptrs[k, b + 1] - cptrs[k, b]
            if ck == 0:
                continue
            src = cbase[k] + cptrs[k, b]
            for t in range(ck):
                cols[cptr[b] + at + t] = cols_all[src + t] + coloff[k]
            vsrc = vbase[k] + vptrs[k, b]
            dst = vptr[b] + at
            for t in range(ck):  # (column by column: a strided copy of the block's rows)
                for r in range(rows):
                    vals[dst + r * c + t] = vals_all[vsrc + r * ck + t]
            at += ck
    return cptr, cols, vptr, vals


@njit(cache=True)
def _normal(n, p, block, cptr, cols, vptr, vals, sw, v, M, rhs):  # pragma: no cover
    """``M = Aᵀ diag(sw²) A`` and ``rhs = Aᵀ v`` over the blocks: each block's rows scaled by
    ``sw`` (√w), their Gram matrix summed four rows at a time in a dense c × c buffer (the
    inner loops run along contiguous rows and vectorise), then added to M."""
    M[:, :] = 0.0
    rhs[:] = 0.0
    nb = cptr.size - 1
    for b in range(nb):
        c = cptr[b + 1] - cptr[b]
        if c == 0:
            continue
        c0 = cptr[b]
        start = b * block
        rows = min(block, n - start)
        G = np.zeros((c, c))
        s = np.zeros(c)
        B = np.empty((rows, c))
        base = vptr[b]
        uc = np.uint64(c)  # (unsigned indices: no negative-index test, so the loops vectorise)
        for r in range(rows):
            sr = sw[start + r]
            vr = v[start + r]
            Br = B[r]
            row = vals[base + r * c: base + (r + 1) * c]
            for t in range(uc):
                a = row[t]
                Br[t] = a * sr
                s[t] += vr * a
        r = 0
        while r + 4 <= rows:
            B0, B1, B2, B3 = B[r], B[r + 1], B[r + 2], B[r + 3]
            for i in range(c):
                b0 = B0[i]
                b1 = B1[i]
                b2 = B2[i]
                b3 = B3[i]
                if b0 == 0.0 and b1 == 0.0 and b2 == 0.0 and b3 == 0.0:
                    continue
                Gi = G[i]
                for j in range(uc):
                    Gi[j] += b0 * B0[j] + b1 * B1[j] + b2 * B2[j] + b3 * B3[j]
            r += 4
        while r < rows:
            B0 = B[r]
            for i in range(c):
                b0 = B0[i]
                if b0 == 0.0:
                    continue
                Gi = G[i]
                for j in range(uc):
                    Gi[j] += b0 * B0[j]
            r += 1
        for i in range(c):
            ci = cols[c0 + i]
            rhs[ci] += s[i]
            for j in range(c):
                M[ci, cols[c0 + j]] += G[i, j]


@njit(cache=True)
def _matvec(n, block, cptr, cols, vptr, vals, a, out):  # pragma: no cover - compiled
    """``out = A a`` over the blocks."""
    nb = cptr.size - 1
    for b in range(nb):
        c = cptr[b + 1] - cptr[b]
        c0 = cptr[b]
        start = b * block
        rows = min(block, n - start)
        for r in range(rows):
            base = vptr[b] + r * c
            acc = 0.0
            for t in range(c):
                acc += vals[base + t] * a[cols[c0 + t]]
            out[start + r] = acc


@njit(cache=True)
def _forward(L, m, b, out):  # pragma: no cover - compiled
    """Solve ``L[:m, :m] out = b`` (L lower triangular)."""
    for i in range(m):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * out[k]
        out[i] = s / L[i, i]


@njit(cache=True)
def _backward(L, m, b, out):  # pragma: no cover - compiled
    """Solve ``L[:m, :m]ᵀ out = b``."""
    for i in range(m - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, m):
            s -= L[k, i] * out[k]
        out[i] = s / L[i, i]


@njit(cache=True)
def _solve_set(Q, q, idx, k, L, z, tmp):  # pragma: no cover - compiled
    """``Q[idx, idx] z = q[idx]`` for the first ``k`` entries of ``idx``, by ``L`` (their
    Cholesky factor, lower)."""
    for t in range(k):
        tmp[t] = q[idx[t]]
    _forward(L, k, tmp, z)
    for t in range(k):
        tmp[t] = z[t]
    _backward(L, k, tmp, z)


@njit(cache=True)
def _append(Q, idx, k, L):  # pragma: no cover - compiled
    """Grow the Cholesky factor ``L`` of ``Q[idx[:k], idx[:k]]`` by the row of ``idx[k]``;
    False if the grown matrix is not definite."""
    j = idx[k]
    for i in range(k):
        s = Q[idx[i], j]
        for t in range(i):
            s -= L[i, t] * L[k, t]
        L[k, i] = s / L[i, i]
    d = Q[j, j]
    for t in range(k):
        d -= L[k, t] * L[k, t]
    if not d > 0.0:
        return False
    L[k, k] = np.sqrt(d)
    return True


@njit(cache=True)
def _refactor(Q, idx, k, L):  # pragma: no cover - compiled
    for t in range(k):
        if not _append(Q, idx, t, L):
            return False
    return True


@njit(cache=True)
def _nonneg_qp(Q, q, start, tol, x):  # pragma: no cover - compiled
    """``min ½ xᵀQx − qᵀx``, ``x ≥ 0`` (Q SPD, (m, m)): Lawson–Hanson's active set on the
    quadratic form, started from the set ``start`` (its negative entries dropped until the
    solution on it is positive). Writes ``x``; False if it does not settle."""
    m = q.size
    x[:] = 0.0
    if m == 0:
        return True
    idx = np.empty(m, dtype=np.int64)
    inset = np.zeros(m, dtype=np.bool_)
    L = np.zeros((m, m))
    z = np.empty(m)
    tmp = np.empty(m)
    k = 0
    for j in range(m):
        if start[j]:
            idx[k] = j
            inset[j] = True
            k += 1
    # the start: the solution on the set, its non-positive entries dropped until none is
    for _ in range(m + 1):
        if k == 0:
            break
        if not _refactor(Q, idx, k, L):
            return False
        _solve_set(Q, q, idx, k, L, z, tmp)
        kk = 0
        for t in range(k):
            if z[t] > 0.0:
                idx[kk] = idx[t]
                kk += 1
            else:
                inset[idx[t]] = False
        if kk == k:
            break
        k = kk
    for t in range(k):  # (L is the factor of this set)
        x[idx[t]] = z[t]
    for _ in range(3 * m + 10):
        # the gradient Qx − q; the most negative one off the set enters
        best, jbest = -tol, -1
        for j in range(m):
            if inset[j]:
                continue
            s = -q[j]
            for t in range(k):
                s += Q[j, idx[t]] * x[idx[t]]
            if s < best:
                best, jbest = s, j
        if jbest < 0:
            return True
        idx[k] = jbest
        if not _append(Q, idx, k, L):
            return False
        k += 1
        inset[jbest] = True
        for _inner in range(m + 1):
            _solve_set(Q, q, idx, k, L, z, tmp)
            alpha, block = 2.0, -1
            for t in range(k):
                if z[t] <= 0.0:
                    xt = x[idx[t]]
                    r = xt / (xt - z[t])
                    if r < alpha:
                        alpha, block = r, t
            if block < 0:
                for t in range(k):
                    x[idx[t]] = z[t]
                break
            if not alpha > 0.0:  # the entering one itself (rounding): the SciPy path decides
                return False
            # step back to the boundary: the blocking entry and any other at 0 leave the set
            kk = 0
            for t in range(k):
                j = idx[t]
                xj = x[j] + alpha * (z[t] - x[j])
                if t != block and xj > 0.0:
                    x[j] = xj
                    idx[kk] = j
                    kk += 1
                else:
                    x[j] = 0.0
                    inset[j] = False
            k = kk
            if not _refactor(Q, idx, k, L):
                return False
        else:
            return False
    return False


@njit(cache=True)
def gram_nnls(M, b, signed, ridge, passive, use_passive, out):  # pragma: no cover
    """``identification._gram_nnls``'s problem, compiled: writes the amplitudes to ``out``;
    returns False on a failure (the caller then takes the SciPy path).

    The columns ordered free first, scaled to a unit diagonal plus ``ridge``; the first
    ``nf`` steps of a right-looking Cholesky factorisation (row-wise, upper) leave the free
    block's factor U₁₁, the coupling W = U₁₂ and, in the trailing block, the Schur complement
    Q = S₂₂ − WᵀW of the non-negative columns; the same steps on the right-hand side give
    the reduced q. Then :func:`_nonneg_qp` on (Q, q) and the free amplitudes by
    back-substitution."""
    p = b.size
    nf = 0
    for j in range(p):
        if signed[j]:
            nf += 1
    nn = p - nf
    order = np.empty(p, dtype=np.int64)
    a, c = 0, nf
    for j in range(p):
        if signed[j]:
            order[a] = j
            a += 1
        else:
            order[c] = j
            c += 1
    scale = np.empty(p)
    for t in range(p):
        scale[t] = np.sqrt(max(M[order[t], order[t]], 1e-300))
    S = np.empty((p, p))
    z = np.empty(p)
    tol = 0.0
    for i in range(p):
        oi = order[i]
        for j in range(i, p):
            S[i, j] = M[oi, order[j]] / (scale[i] * scale[j])
        S[i, i] += ridge
        z[i] = b[oi] / scale[i]
        tol = max(tol, abs(z[i]))
    tol = 1e-12 * max(tol, 1e-300)
    # eliminate the free columns (upper triangle, row j becomes U[j, j:])
    up = np.uint64(p)  # (unsigned indices: no negative-index test, so the loops vectorise)
    for j in range(nf):
        d = S[j, j]
        if not d > 0.0:
            return False
        d = np.sqrt(d)
        Sj = S[j]
        for t in range(np.uint64(j), up):
            Sj[t] /= d
        z[j] /= d
        for i in range(j + 1, p):
            f = Sj[i]
            if f != 0.0:
                Si = S[i]
                for t in range(np.uint64(i), up):
                    Si[t] -= f * Sj[t]
                z[i] -= f * z[j]
    Q = np.empty((nn, nn))
    q = np.empty(nn)
    for i in range(nn):
        q[i] = z[nf + i]
        for j in range(i, nn):
            Q[i, j] = S[nf + i, nf + j]
            Q[j, i] = Q[i, j]
    start = np.zeros(nn, dtype=np.bool_)
    if use_passive:
        for j in range(nn):
            start[j] = passive[order[nf + j]]
    xn = np.empty(nn)
    if not _nonneg_qp(Q, q, start, tol, xn):
        return False
    # the free amplitudes: U₁₁ x_f = z_f − W x_n
    xf = np.empty(nf)
    for i in range(nf - 1, -1, -1):
        s = z[i]
        for j in range(nn):
            s -= S[i, nf + j] * xn[j]
        for k in range(i + 1, nf):
            s -= S[i, k] * xf[k]
        xf[i] = s / S[i, i]
    for i in range(nf):
        out[order[i]] = xf[i] / scale[i]
    for j in range(nn):
        out[order[nf + j]] = xn[j] / scale[nf + j]
    return True


@njit(cache=True)
def irls(A, norm, signed, y, offset, a_start, has_start, n_iter, floor):  # pragma: no cover
    """``identification._fit_blocks``'s IRLS on the normalised matrix ``A / norm`` (n, p;
    the quotients formed here, not stored): returns ``(a, fitted, ok)`` (amplitudes of the
    normalised columns, ``(A / norm) a``; ``ok`` False on a failure of a step's solve).
    ``a_start`` (used when ``has_start``) is already normalised and clipped at 0 off the
    signed columns."""
    n, p = A.shape
    cptr, cols, vptr, vals = pack_blocks(A, norm, BLOCK)
    return irls_packed(n, p, cptr, cols, vptr, vals, signed, y, offset, a_start, has_start,
                       n_iter, floor)


@njit(cache=True)
def irls_packed(n, p, cptr, cols, vptr, vals, signed, y, offset, a_start, has_start, n_iter,
                floor):  # pragma: no cover - compiled
    """:func:`irls` on the packed blocks of ``A / norm`` (:func:`pack_blocks`'s form, n × p,
    from it or from :func:`merge_packs`): the same steps."""
    r = np.empty(n)
    for i in range(n):
        r[i] = y[i] - offset[i]
    w = np.empty(n)
    a = np.zeros(p)
    fitted = np.zeros(n)
    if has_start:
        a[:] = a_start
        _matvec(n, BLOCK, cptr, cols, vptr, vals, a, fitted)
        for i in range(n):
            w[i] = 1.0 / max(offset[i] + fitted[i], floor)
    else:
        for i in range(n):
            w[i] = 1.0 / max(y[i] + offset[i], 1.0)
    have = has_start
    M = np.empty((p, p))
    rhs = np.empty(p)
    v = np.empty(n)
    passive = np.zeros(p, dtype=np.bool_)
    a_new = np.empty(p)
    new = np.empty(n)
    sw = np.empty(n)
    for _ in range(n_iter):
        for i in range(n):
            v[i] = r[i] * w[i]
            sw[i] = np.sqrt(w[i])
        _normal(n, p, BLOCK, cptr, cols, vptr, vals, sw, v, M, rhs)
        for j in range(p):
            passive[j] = a[j] > 0.0 and not signed[j]
        if not gram_nnls(M, rhs, signed, 1e-10, passive, have, a_new):
            return a, fitted, False
        _matvec(n, BLOCK, cptr, cols, vptr, vals, a_new, new)
        change = np.inf
        if have:
            top, diff = 0.0, 0.0
            for i in range(n):
                diff = max(diff, abs(new[i] - fitted[i]))
                top = max(top, abs(new[i]))
            change = diff / max(top, 1e-12)
        a[:] = a_new
        fitted[:] = new
        have = True
        for i in range(n):
            w[i] = 1.0 / max(offset[i] + fitted[i], floor)
        if change < 1e-4:
            break
    return a, fitted, True


@njit(cache=True)
def drop_one(n, cptr, cols, vptr, vals, M, rhs, signed, positive, owner, codes, zero,
             floor):  # pragma: no cover - compiled
    """The presence test's one-step bounds (:func:`esmpy_hs.physics.presence._presence`): for
    each element code in ``codes``, the columns of other owners (``owner != code``) kept,
    :func:`gram_nnls` on their normal equations (``M``, ``rhs`` of the packed normalised
    matrix; started from the full fit's set ``positive``), and the fitted spectrum
    ``max(zero + A x, floor)`` over the packed blocks. Returns ``(mu, x, ok)``: (k, n), the
    amplitudes (k, p; 0 on the dropped columns) and whether each solve succeeded."""
    p = rhs.size
    k = codes.size
    mus = np.empty((k, n))
    xs = np.zeros((k, p))
    ok = np.zeros(k, dtype=np.bool_)
    full = np.empty(p)
    fitted = np.empty(n)
    for e in range(k):
        q = 0
        for j in range(p):
            if owner[j] != codes[e]:
                q += 1
        idx = np.empty(q, dtype=np.int64)
        q = 0
        for j in range(p):
            if owner[j] != codes[e]:
                idx[q] = j
                q += 1
        Mk = np.empty((q, q))
        bk = np.empty(q)
        sk = np.empty(q, dtype=np.bool_)
        pk = np.empty(q, dtype=np.bool_)
        for r in range(q):
            bk[r] = rhs[idx[r]]
            sk[r] = signed[idx[r]]
            pk[r] = positive[idx[r]]
            for c in range(q):
                Mk[r, c] = M[idx[r], idx[c]]
        out = np.empty(q)
        if not gram_nnls(Mk, bk, sk, 1e-10, pk, True, out):
            continue
        full[:] = 0.0
        for r in range(q):
            full[idx[r]] = out[r]
            xs[e, idx[r]] = out[r]
        _matvec(n, BLOCK, cptr, cols, vptr, vals, full, fitted)
        for i in range(n):
            mus[e, i] = max(zero[i] + fitted[i], floor)
        ok[e] = True
    return mus, xs, ok


# ---- the peaks of line columns and the candidates' screen (bit-identical to NumPy) ----------
# Only additions, subtractions, products and quotients (each correctly rounded, as NumPy's
# elementwise operations are) and sums in the order ``np.bincount`` adds them; erf and log stay
# in SciPy/NumPy. The results are the same numbers as the NumPy expressions they replace.


@njit(cache=True)
def peak_arguments(edges, centres, sig, lo, m):  # pragma: no cover - compiled
    """The erf arguments ``(edges[lo_p + t] − centre_p) / (√2 σ_p)``, t < m_p, of every peak
    p, one after another (:func:`esmpy_hs.physics.identification._peaks_fast`'s ``cdf``)."""
    total = 0
    for p in range(m.size):
        total += m[p]
    x = np.empty(total)
    pos = 0
    r2 = np.sqrt(2.0)
    for p in range(m.size):
        c = centres[p]
        d = r2 * sig[p]
        out = x[pos: pos + m[p]]
        src = edges[lo[p]: lo[p] + m[p]]
        for t in range(np.uint64(max(m[p], 0))):  # (unsigned: the loop vectorises)
            out[t] = (src[t] - c) / d
        pos += m[p]
    return x


@njit(cache=True)
def _add_peaks(out, erfs, pos, lo, m, weights, column, ch_stride, col_stride):  # pragma: no cover
    """Add ``weights_p (½ erf(x_{t+1}) − ½ erf(x_t))`` to ``out[(lo_p + t) · ch_stride +
    column_p · col_stride]``, peak by peak, channel by channel (each peak's erf values at
    ``erfs[pos_p:pos_p + m_p]``)."""
    for p in range(m.size):
        w = weights[p]
        base = column[p] * col_stride
        q = pos[p]
        if ch_stride == 1:  # a peak's channels one after another: the loop vectorises
            nt = m[p] - 1
            if nt <= 0:
                continue
            dst = out[lo[p] + base: lo[p] + base + nt]
            e0 = erfs[q: q + nt]
            e1 = erfs[q + 1: q + nt + 1]
            for t in range(np.uint64(nt)):
                v = 0.5 * e1[t] - 0.5 * e0[t]
                v *= w
                dst[t] += v
            continue
        for t in range(m[p] - 1):
            v = 0.5 * erfs[q + t + 1] - 0.5 * erfs[q + t]
            v *= w
            out[(lo[p] + t) * ch_stride + base] += v


@njit(cache=True)
def peak_sums_at(erfs, pos, lo, m, weights, column, n, n_columns):  # pragma: no cover
    """``Σ_p weights_p (½ erf(x_{t+1}) − ½ erf(x_t))`` into channel ``lo_p + t`` of column
    ``column_p``, (n · n_columns,), in ``np.bincount``'s order (peak by peak, channel by
    channel), with each peak's erf values at ``erfs[pos_p:pos_p + m_p]`` (consecutive peaks:
    ``pos = cumsum(m) − m``; peaks of the same centre and width may share them)."""
    out = np.zeros(n * n_columns)
    _add_peaks(out, erfs, pos, lo, m, weights, column, n_columns, 1)
    return out


@njit(cache=True)
def peak_sums_columns(erfs, pos, lo, m, weights, column, n, n_columns):  # pragma: no cover
    """:func:`peak_sums_at` into the transposed layout ``(n_columns, n)`` (each peak's
    channels one after another in memory, not ``n_columns`` apart; every entry the same sum in
    the same order), and each column's sum over the channels in channel order (the order of
    NumPy's ``G.sum(axis=0)`` on the (n, n_columns) matrix: the same sums)."""
    flat = np.zeros(n_columns * n)
    _add_peaks(flat, erfs, pos, lo, m, weights, column, 1, n)
    out = flat.reshape((n_columns, n))
    sums = np.zeros(n_columns)
    for c in range(n_columns):
        acc = 0.0
        for i in range(n):
            acc += out[c, i]
        sums[c] = acc
    return out, sums


@njit(cache=True)
def tied_columns(Gt, first, two):  # pragma: no cover - compiled
    """The tied columns (n, m) from the families' columns ``Gt`` (n_columns, n): column k is
    family column ``first[k]``, plus ``first[k] + 1`` where ``two[k]`` (one addition, as
    NumPy's ``T[:, two] += G[:, first[two] + 1]``)."""
    n = Gt.shape[1]
    m = first.size
    T = np.empty((n, m))
    for i0 in range(0, n, 64):  # 64 channels at a time: the rows of Gt read in runs
        i1 = min(i0 + 64, n)
        for k in range(m):
            g = Gt[first[k]]
            if two[k]:
                h = Gt[first[k] + 1]
                for i in range(i0, i1):
                    T[i, k] = g[i] + h[i]
            else:
                for i in range(i0, i1):
                    T[i, k] = g[i]
    return T


@njit(cache=True)
def nonzero_entries(C):  # pragma: no cover - compiled
    """``np.nonzero(C)`` of a 2-D array and the entries there, ``(i, j, C[i, j])``, in the
    same (row-major) order."""
    n, m = C.shape
    k = 0
    for i in range(n):
        for j in range(m):
            if C[i, j] != 0.0:
                k += 1
    ii = np.empty(k, dtype=np.int64)
    jj = np.empty(k, dtype=np.int64)
    vv = np.empty(k)
    k = 0
    for i in range(n):
        for j in range(m):
            if C[i, j] != 0.0:
                ii[k] = i
                jj[k] = j
                vv[k] = C[i, j]
                k += 1
    return ii, jj, vv


@njit(cache=True)
def screen_newton(yy, mm, c, j, n_cand, n_iter):  # pragma: no cover - compiled
    """The screen's Newton steps (:func:`esmpy_hs.physics.identification._screen` with
    ``FAST_PATH``) over the nonzero entries (channel values ``yy``, ``mm``, column entry
    ``c``, candidate ``j``): the amplitudes b ≥ 0, the candidates' entries kept (score > 0)
    and the ratio (μ + c b)/μ at each kept entry, for the log of the gain."""
    k = yy.size
    score = np.zeros(n_cand)
    for t in range(k):
        score[j[t]] += c[t] * (yy[t] - mm[t]) * (1.0 / mm[t])
    keep = np.empty(k, dtype=np.int64)
    nk = 0
    for t in range(k):
        if score[j[t]] > 0.0:
            keep[nk] = t
            nk += 1
    info = np.zeros(n_cand)
    for s in range(nk):
        t = keep[s]
        info[j[t]] += c[t] * c[t] * (1.0 / mm[t])
    b = np.zeros(n_cand)
    for q in range(n_cand):
        if score[q] > 0.0:
            b[q] = score[q] / max(info[q], 1e-300)
    for _ in range(n_iter):
        score[:] = 0.0
        info[:] = 0.0
        for s in range(nk):
            t = keep[s]
            q = j[t]
            mt = mm[t] + c[t] * b[q]
            r = yy[t] / mt
            score[q] += c[t] * (r - 1.0)
            info[q] += c[t] * c[t] * r / mt
        for q in range(n_cand):
            b[q] = max(b[q] + score[q] / max(info[q], 1e-300), 0.0)
    ratio = np.empty(nk)
    for s in range(nk):
        t = keep[s]
        ratio[s] = (mm[t] + c[t] * b[j[t]]) / mm[t]
    return b, keep[:nk], ratio


@njit(cache=True)
def screen_gain(yy, c, j, b, keep, log_ratio, n_cand):  # pragma: no cover - compiled
    """2 Σ (y log((μ + c b)/μ) − c b) per candidate over the kept entries (0 where y = 0)."""
    gain = np.zeros(n_cand)
    for s in range(keep.size):
        t = keep[s]
        v = yy[t] * log_ratio[s] if yy[t] > 0 else 0.0
        gain[j[t]] += v - c[t] * b[j[t]]
    for q in range(n_cand):
        gain[q] = max(2.0 * gain[q], 0.0)
    return gain


@njit(cache=True)
def sum_peaks(E, counts, starts, e_lo, e_hi):  # pragma: no cover - compiled
    """The sum peaks of lines ``E`` (keV) with ``counts``, grouped by element
    (``E[starts[i]:starts[i+1]]``): for each pair of elements i ≤ j, each line p of i and q of
    j, the centre ``E_p + E_q`` and weight ``counts_p · counts_q`` (twice for i ≠ j) where
    e_lo < centre < e_hi, in that order (as the NumPy outer sums and products row by row)."""
    ne = starts.size - 1
    total = 0
    for i in range(ne):
        for j in range(i, ne):
            total += (starts[i + 1] - starts[i]) * (starts[j + 1] - starts[j])
    cen = np.empty(total)
    w = np.empty(total)
    k = 0
    for i in range(ne):
        for j in range(i, ne):
            f = 1.0 if i == j else 2.0
            for p in range(starts[i], starts[i + 1]):
                for q in range(starts[j], starts[j + 1]):
                    c = E[p] + E[q]
                    if c > e_lo and c < e_hi:
                        cen[k] = c
                        w[k] = (counts[p] * counts[q]) * f
                        k += 1
    return cen[:k].copy(), w[:k].copy()


@njit(cache=True)
def edge_channels(e, jump, width, reach):  # pragma: no cover - compiled
    """For each row of ``jump`` ((k, n − 1): an edge between channels c and c + 1), the
    channels within ``width`` keV of each edge's channel c: ``|e[i] − e[c]| ≤ width``,
    compared over the channels that can hold (``e[c] ± reach``, ``e`` ascending, as
    ``np.searchsorted``'s left and right sides), as ``identification._edge_column`` marks
    them; (k, n) flags."""
    k, m = jump.shape
    n = e.size
    near = np.zeros((k, n), dtype=np.bool_)
    for r in range(k):
        for c in range(m):
            if not jump[r, c]:
                continue
            ec = e[c]
            lo = np.searchsorted(e, ec - reach)
            hi = np.searchsorted(e, ec + reach, side="right")
            for i in range(lo, hi):
                if abs(e[i] - ec) <= width:
                    near[r, i] = True
    return near


@njit(cache=True)
def mark_neighbourhoods(e, E, fw, lo, hi, owner, near, wide):  # pragma: no cover - compiled
    """For each main line p (energy ``E[p]``, FWHM ``fw[p]``, its element's column
    ``owner[p]``) and channel c in ``lo[p] ≤ c < hi[p]``: ``near[c, owner[p]]`` where
    ``|e[c] − E[p]| / fw[p] ≤ 1.5``, ``wide[...]`` where it is ≤ 4 (the same quotients and
    comparisons as ``identification._neighbourhoods``' index arrays)."""
    for p in range(E.size):
        q = owner[p]
        for c in range(lo[p], hi[p]):
            d = abs(e[c] - E[p]) / fw[p]
            if d <= 1.5:
                near[c, q] = True
            if d <= 4.0:
                wide[c, q] = True


@njit(cache=True)
def derivatives(F, scale):  # pragma: no cover - compiled
    """``[np.gradient(F, axis=0) / scale, np.gradient(that, axis=0) / scale]`` (n ≥ 3): the
    centred differences halved inside, the one-sided ones at the ends, then the division by
    ``scale``; the same operations as NumPy's, the same numbers."""
    n, f = F.shape
    out = np.empty((n, 2 * f))
    for j in range(f):
        out[0, j] = (F[1, j] - F[0, j]) / 1.0 / scale
        for i in range(1, n - 1):
            out[i, j] = (F[i + 1, j] - F[i - 1, j]) / 2.0 / scale
        out[n - 1, j] = (F[n - 1, j] - F[n - 2, j]) / 1.0 / scale
    for j in range(f):
        k = f + j
        out[0, k] = (out[1, j] - out[0, j]) / 1.0 / scale
        for i in range(1, n - 1):
            out[i, k] = (out[i + 1, j] - out[i - 1, j]) / 2.0 / scale
        out[n - 1, k] = (out[n - 1, j] - out[n - 2, j]) / 1.0 / scale
    return out

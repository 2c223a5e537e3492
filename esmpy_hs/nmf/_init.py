"""Starting points: the deterministic physics-aware ``"auto"`` start and ``"random"``.

``"auto"`` (deterministic, no random numbers):

1. **Bin** pixels on the grid (when the grid is known) into b × b blocks, b chosen so a block
   holds about ``target_counts`` counts (b = 1 at high dose on small maps); only full blocks are
   used.
2. **Cluster** the blocks: features are the counts projected on the (column-normalised) G — per
   element line intensities — or on ≤ 64 channel bins when G is the identity, normalised per block
   to unit sum; weighted k-means (weights = counts), seeded by farthest-point (maximin) selection
   among the brighter half of the blocks starting from the brightest one, then Lloyd iterations.
   With a physics G, the heaviest cluster is kept as the anchor (the matrix) and the other
   phases are the most distinct blocks (successive projections on the differences from the
   anchor, :func:`anchored_spa_labels`): cluster means of particles in a matrix are mixtures.
3. **Fit W**: the mean spectrum of each cluster is fitted on G (``G[j]`` for a 3-D G) by
   non-negative least squares (:func:`scipy.optimize.nnls`); with G = identity it is W directly.
3b. **Move mixed clusters** (physics G, when the full-resolution fit follows the refinement):
   a minor cluster that is mixed mainly with phases other than the anchor — a film between two
   grains, :func:`mixed_clusters` — is moved away from the phases around it
   (:func:`surroundings` of the blocks' mixtures, :func:`block_mixtures`) to
   ``extrapolation`` of its composition bound, before the refinement could explain it away as
   a mixture of them.
4. **Refine** on the binned data (when b > 1): a short run of the same solver on the binned
   blocks, where the signal-to-noise is b² times higher and an iteration b² times cheaper. This
   is what makes low-dose starts good. When the spectra are then held (``spectra_from=
   "blocks"``) this refinement *is* the estimate of W, so it uses the fit's sparsity prior
   (``mu``, ``eps_reg``; no Laplacian), which keeps a block that is mostly one phase from
   being explained as a mixture. When the full-resolution fit follows, the refinement stays
   unregularised (the prior there can merge a minor phase into the matrix before the
   full-resolution data are seen). docs/validation.rst gives the measurements.
   On a large map whose full-resolution fit follows (more than :data:`MAX_REFINE_BLOCKS`
   blocks, e.g. 65 536 at 1024² and 290 counts per pixel) W is refined on a subset of the
   blocks that keeps every cluster of step 2 — all the blocks of a small one, an evenly spread
   share of a large one (:func:`refine_subset`) — and then all the blocks' abundances are
   refitted with W held (:data:`H_REFIT_ITER` iterations, the subset's blocks from their
   refined abundances): the refinement's cost no longer grows with the map. The spectra
   estimate of ``spectra_from="blocks"`` always uses every block.
5. **Extrapolate** (physics G only): minor phases are moved away from the anchor up to the
   bound set by non-negative compositions (:func:`extrapolate_minor_phases`), since particles
   thinner than the specimen are only seen mixed with the matrix (:data:`START_BOUND_LIMIT`:
   not a phase whose bound lies implausibly far). Skipped by default when the
   full-resolution fit follows with its own final move to the bound (:func:`anchor_move`):
   that move is then made once, from the fitted spectra.
6. **H**: every pixel takes its block's abundances, then a few H-only iterations with W held
   (done by the caller, with the full regularisation).

A ``KeyboardInterrupt`` (Ctrl-C) anywhere in the start propagates to the caller: the solver of
step 4 catches it to keep its last iterate, so :func:`auto_init` raises it again rather than go
on with a half-refined start; there is no fitted result yet to keep.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

from esmpy_hs.nmf._blas import one_blas_thread
from esmpy_hs.nmf._data import CompactCounts, as_compact
from esmpy_hs.nmf._laplacian import empty_adjacency
from esmpy_hs.nmf._solver import HParams, WParams, feasible_H, feasible_W, solve

#: counts a binned block should hold for clustering
TARGET_COUNTS = 3000.0
#: blocks averaged around each extreme block of the start
NN_BLOCKS = 4
#: an element below this share of the anchor phase's elements does not bound the extrapolation
TRACE_SHARE = 1e-3
#: a phase holding at least this share of the abundance around a minor phase (:func:`surroundings`)
#: is one of the phases it may be mixed with
PARTNER_SHARE = 0.1
#: an element bounds the start's move to the composition bound only where it would fall more
#: than this many standard errors below zero (:func:`spectra_errors`): the counts do not show
#: an element of the phase to be present when its estimate is within that of zero
BOUND_Z = 2.0
#: the move to the composition bound is made when the bound puts the phase's largest abundance
#: between these fractions of its fitted one, 1/(1 + β): below 80 % the phase is clearly never
#: seen pure; above 25 % the bound is a plausible thickness for an embedded phase (a bound
#: further out, e.g. a phase sharing every element of the dominant one, is not evidence of an
#: embedded phase and is left alone). Used by the move after the fit (:func:`esmpy_hs.nmf._fit.
#: to_bound`, both limits) and by the start's move after its refinement (step 5, the far limit)
BOUND_ABUNDANCE = (0.25, 0.8)
#: step 5 leaves a phase whose bound lies beyond the far limit of :data:`BOUND_ABUNDANCE` in
#: the binned blocks where it is; in the low-dose blocks mode the move after the fit then
#: decides for it from the pixels' abundances (:func:`esmpy_hs.nmf._fit.run`), as after a
#: full-resolution fit. A grain boundary enriched in one element (espm's Ca–P–Sr map) reaches
#: its bound only where the enriched element alone is left, far beyond every pixel, and stays;
#: a particle smaller than a block, as far from its bound in every block, is moved by the rules
#: after the fit (which can stop short of this step's move: no allowance for the blocks'
#: errors, ``BOUND_Z``). False: the move in the blocks, unlimited, as before
#: (docs/validation.rst, "Maps espm's defaults make")
START_BOUND_LIMIT = True
#: a block lies behind the dominant cluster when one of its coordinates along the directions to
#: the most distinct blocks is below minus this share of the way (:func:`behind_share`)
BEHIND_DEPTH = 0.3
#: most binned blocks the refinement of W works on (step 4; :func:`refine_subset`)
MAX_REFINE_BLOCKS = 4096
#: iterations refitting the blocks' abundances with W held after a grouped refinement
H_REFIT_ITER = 30
#: the start moves a minor cluster mixed with phases other than the anchor away from the
#: phases around it before the refinement (step 3b of the module docstring); False: the start
#: of before that move (commit 7f6bbea), for comparisons
MIXED_MOVE = True
#: step 3b moves only a cluster whose surroundings are mainly other phases than the anchor (the
#: anchor holds less than half of them: a film between two grains); a cluster mixed mainly with
#: the anchor (a particle, also where it overlaps another particle) is the case of step 5.
#: False: any other phase holding PARTNER_SHARE of the surroundings makes it movable (as before)
MIXED_MAINLY_OTHERS = True
#: when the full-resolution fit follows and its final move to the composition bound is on
#: (``final_extrapolation > 0``) and ``init_extrapolation`` is left to its default, step 5 is
#: skipped: the fit's final move makes it from the fitted spectra. False: step 5 at half way,
#: as before (docs/validation.rst, "The reference sample at 293 counts per pixel")
DEFER_TO_FINAL = True


def to_csr(data: CompactCounts) -> sp.csr_array:
    """The counts as a scipy CSR array, pixels × channels (float64)."""
    if data.dense is not None:
        return sp.csr_array(data.dense.astype(np.float64))
    return sp.csr_array(
        (data.counts.astype(np.float64), data.indices.astype(np.int32), data.indptr),
        shape=(data.n_pixels, data.n_channels),
    )


def bin_factor(shape: tuple[int, ...] | None, mean_counts: float, k: int) -> int:
    """Block size b (b × b pixels, or b² along a chain) for the clustering/refinement stage."""
    if shape is None or mean_counts <= 0:
        return 1
    b = max(1, math.ceil(math.sqrt(TARGET_COUNTS / mean_counts)))
    min_blocks = max(16, 8 * k)
    while b > 1:
        nblocks = (shape[0] // b) * (shape[1] // b) if len(shape) == 2 else shape[0] // (b * b)
        if nblocks >= min_blocks:
            break
        b -= 1
    return b


def block_index(shape: tuple[int, ...], b: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Block of every pixel (−1 outside full blocks) and the nearest full block of every pixel.

    Returns ``(block, nearest, n_blocks)``.
    """
    if len(shape) == 1:
        L = b * b
        n = shape[0]
        nb = n // L
        pos = np.arange(n) // L
        block = np.where(pos < nb, pos, -1)
        nearest = np.minimum(pos, nb - 1)
        return block, nearest, nb
    rows, cols = shape
    br, bc = rows // b, cols // b
    r = np.arange(rows)[:, None] // b
    c = np.arange(cols)[None, :] // b
    inside = (r < br) & (c < bc)
    block = np.where(inside, r * bc + c, -1).ravel()
    nearest = (np.minimum(r, br - 1) * bc + np.minimum(c, bc - 1)).ravel()
    return block, nearest, br * bc


def _features(Xb: sp.csr_array | np.ndarray, G: np.ndarray | None, n: int) -> np.ndarray:
    if G is None:
        nbins = min(64, n)
        edges = np.linspace(0, n, nbins + 1).astype(np.int64)
        B = sp.csr_array(
            (np.ones(n), (np.arange(n), np.searchsorted(edges, np.arange(n), side="right") - 1)),
            shape=(n, nbins),
        )
        F = Xb @ B
    else:
        Gm = G if G.ndim == 2 else G.mean(axis=0)
        cs = Gm.sum(axis=0)
        Gn = Gm / np.where(cs > 0, cs, 1.0)[None, :]
        F = Xb @ Gn
    F = F.toarray() if sp.issparse(F) else np.asarray(F)
    return np.asarray(F, dtype=np.float64)


def kmeans_maximin(F: np.ndarray, weights: np.ndarray, k: int, n_iter: int = 30) -> np.ndarray:
    """Deterministic weighted k-means on the rows of F; returns the label of every row."""
    npts = F.shape[0]
    if npts <= k:
        return np.arange(npts) % k
    bright = weights >= np.median(weights)
    cand = np.flatnonzero(bright)
    seeds = [int(cand[np.argmax(weights[cand])])]
    d2 = np.sum((F - F[seeds[0]]) ** 2, axis=1)
    for _ in range(1, k):
        dc = np.where(bright, d2, -1.0)
        s = int(np.argmax(dc))
        seeds.append(s)
        d2 = np.minimum(d2, np.sum((F - F[s]) ** 2, axis=1))
    C = F[seeds].copy()
    labels = np.zeros(npts, dtype=np.int64)
    for it in range(n_iter):
        dist = ((F[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
        new = np.argmin(dist, axis=1)
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            sel = labels == j
            wsum = weights[sel].sum()
            if wsum > 0:
                C[j] = (weights[sel, None] * F[sel]).sum(axis=0) / wsum
            else:  # empty cluster: take the worst-fitted point
                far = int(np.argmax(dist[np.arange(npts), labels]))
                C[j] = F[far]
                labels[far] = j
    return labels


def anchored_spa_labels(
    F: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int, n_nearest: int = NN_BLOCKS
) -> np.ndarray:
    """Labels for the start: the heaviest k-means cluster, and the k − 1 most distinct blocks.

    The heaviest cluster (by counts) is the anchor, label 0: in a map of particles in a matrix it
    is the matrix, whose pixels are pure. The other phases are found by successive projections
    on the differences from the anchor: the block farthest from it, then the block farthest from
    the span of the first difference, … — the extreme, least mixed spectra, where the cluster
    means of k-means would be mixtures. Each extreme block takes its ``n_nearest`` neighbours in
    feature space (label 1 … k − 1); every other block is unlabelled (−1).
    """
    heavy = int(np.argmax(np.bincount(labels, weights=weights, minlength=k)))
    member = labels == heavy
    anchor = np.average(F[member], axis=0, weights=weights[member])
    R = F - anchor[None, :]
    out = np.where(member, 0, -1)
    for c in range(1, k):
        j = int(np.argmax(np.sum(R**2, axis=1)))
        norm = np.linalg.norm(R[j])
        if not norm > 0:
            break
        u = R[j] / norm
        R = R - np.outer(R @ u, u)
        d = np.sum((F - F[j]) ** 2, axis=1)
        out[np.argsort(d, kind="stable")[:n_nearest]] = c
    return out


def block_mixtures(F: np.ndarray, labels: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Abundances (blocks × k, rows summing to 1) of every block as a non-negative mixture of
    the mean features of the labelled blocks of each phase (label ≥ 0; a phase with no labelled
    block gets none)."""
    centres = np.zeros((k, F.shape[1]))
    for c in range(k):
        sel = labels == c
        if np.any(sel) and weights[sel].sum() > 0:
            centres[c] = np.average(F[sel], axis=0, weights=weights[sel])
    H = np.stack([nnls(centres.T, f, maxiter=50 * k)[0] for f in F])
    s = H.sum(axis=1, keepdims=True)
    return np.where(s > 0, H / np.where(s > 0, s, 1.0), 1.0 / k)


def surroundings(Ht: np.ndarray, grid: tuple[int, ...] | None, radius: int = 1) -> np.ndarray:
    """For every phase, the mixture of the other phases around it: (k, k) weights.

    A phase that is never seen pure (a particle thinner than the specimen, a film on a grain
    boundary) is seen mixed with the material above and below it, which is the material around
    it: the matrix around a particle, the two grains on either side of a boundary. Column j
    holds the mean abundance of each other phase over the pixels where phase j is found and
    their neighbours: the weights are phase j's abundance spread over a (2·radius + 1)-pixel
    box on the grid (``grid``: (rows, cols) or (n,); None: no spreading, the pixels where j is
    found). "Found" is above the phase's median abundance, its background level when it fills
    less than half the map. Each column sums to 1 over the other phases (its diagonal entry is
    0); a phase found nowhere else gets equal weights.
    """
    from scipy.ndimage import uniform_filter

    H = np.asarray(Ht, dtype=np.float64)
    p, k = H.shape
    C = np.zeros((k, k))
    for j in range(k):
        # where j is found: above its background level (its median, the level of the many
        # pixels of a minor phase that do not hold it)
        w = np.maximum(H[:, j] - np.median(H[:, j]), 0.0)
        if grid is not None and int(np.prod(grid)) == p:
            w = uniform_filter(w.reshape(grid), size=2 * radius + 1, mode="nearest").ravel()
        share = w @ H
        share[j] = 0.0
        tot = share.sum()
        C[:, j] = share / tot if tot > 0 else np.where(np.arange(k) == j, 0.0, 1.0 / max(k - 1, 1))
    return C


def extrapolate_minor_phases(
    W: np.ndarray, Hb: np.ndarray, wp: WParams, anchor: int = 0, gamma: float = 0.5,
    bounds: tuple[float, float] = (0.0, np.inf), movable: np.ndarray | None = None,
    reference: np.ndarray | None = None, errors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move every minor phase away from the phases it is mixed with, up to the W ≥ 0 boundary.

    Particles thinner than the specimen are never seen pure: their measured spectrum is a
    mixture a·true + (1 − a)·R of the true one and of the material R around it (the matrix),
    so W_j = a·W_true + (1 − a)·W_R and W_true = W_j + β (W_j − W_R) with β = (1 − a)/a ≥ 0.
    The data alone do not fix β (the likelihood is flat along it); physics does bound it: no
    element fraction can be negative. Each minor column is moved to ``gamma`` × that bound (the
    first element of the phase to reach zero), over the element rows (``wp.simplex_rows``);
    the abundances are moved the other way, to the phases of R, so the model is unchanged. R is
    the ``anchor`` phase, or with ``reference`` (k, k) (:func:`surroundings`) the mixture
    ``W @ reference[:, j]`` of the other phases. The regularised fit that follows pulls a phase
    back inside if the bound overshoots (a phase seen pure keeps β ≈ 0 because some element is
    already ≈ 0). A phase whose bound β (before ``gamma``) lies outside ``bounds``, or that
    ``movable`` (k,) marks False, is not moved; the anchor never moves. ``errors`` (same shape
    as W, or None): standard errors of W (:func:`spectra_errors`); an element then bounds the
    move only where it falls :data:`BOUND_Z` standard errors below zero (a minor element of the
    matrix whose share in the mixture the counts fix poorly, e.g. under an overlapping line,
    no longer stops the move early), and is clipped to the floor after it. Returns
    ``(W, Hb, β)`` with β (k,) the move of each phase (0 for the anchor and unmoved phases).
    """
    rows = np.asarray(wp.simplex_rows, dtype=bool)
    W = W.copy()
    Hb = Hb.copy()
    k = W.shape[1]
    betas = np.zeros(k)
    for j in range(k):
        if j == anchor or (movable is not None and not movable[j]):
            continue
        if reference is None:
            partners = np.array([anchor])
        else:
            partners = np.flatnonzero(np.asarray(reference[:, j]) >= PARTNER_SHARE)
            partners = partners[partners != j]
        slack = None if errors is None else BOUND_Z * np.asarray(errors)[rows, j]
        v = _largest_move(W, rows, j, partners, slack)
        if v is None:
            continue
        bound = float(v.sum())
        if not bound > 0 or not bounds[0] <= bound <= bounds[1]:
            continue
        mix = np.zeros(k)
        mix[partners] = v / bound
        W_R = W @ mix
        beta = gamma * bound
        betas[j] = beta
        W[:, j] = np.maximum(W[:, j] + beta * (W[:, j] - W_R), wp.eps)
        moved = Hb[:, j] * beta / (1.0 + beta)
        Hb[:, j] -= moved
        Hb += moved[:, None] * mix[None, :]
    feasible_W(W, wp)
    return W, Hb, betas


def _largest_move(W: np.ndarray, rows: np.ndarray, j: int, partners: np.ndarray,
                  slack: np.ndarray | None = None):
    """The largest removal v ≥ 0 (one entry per partner) of the partner phases from phase j
    that keeps every element fraction ≥ 0: maximise Σ v subject to
    W_j + Σ_i v_i (W_j − W_i) ≥ 0 over the element rows. Elements a partner holds at a trace
    level (< TRACE_SHARE of its element sum) do not bound the move (at 1e-6 against a phase at
    the 1e-10 floor they would stop it at once). ``slack`` (elements,): how far below zero each
    element may go (0 when None). None when unbounded or no partner."""
    from scipy.optimize import linprog

    if partners.size == 0:
        return None
    Wj = W[rows, j]
    D = Wj[:, None] - W[rows][:, partners]  # elements × partners
    if slack is not None:
        Wj = Wj + np.maximum(slack, 0.0)
    P = W[rows][:, partners]
    trace = P < TRACE_SHARE * P.sum(axis=0, keepdims=True)
    D = np.where(trace & (D < 0), 0.0, D)
    if not np.any(D < 0):
        return None
    if partners.size == 1:  # one partner: the first element to reach zero
        neg = D[:, 0] < 0
        return np.array([float(np.min(Wj[neg] / -D[neg, 0]))])
    res = linprog(-np.ones(partners.size), A_ub=-D, b_ub=Wj, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    return np.asarray(res.x, dtype=np.float64)


def spectra_errors(G: np.ndarray, W: np.ndarray, Hb: np.ndarray, counts: np.ndarray,
                   chunk: int = 512) -> np.ndarray:
    """Standard errors of W (same shape) from the Poisson counts of the blocks, H held.

    Block b holds ``counts[b]`` counts with the expected spectrum μ_b ∝ Σ_i Hb[b, i] G W_i
    (``G[i]`` for a 3-D G), scaled to those counts. With the abundances held, the Fisher
    information of W_j is Gᵀ diag(v) G with v = Σ_b (∂μ_b/∂(G W_j))² / μ_b: a phase seen
    mixed with another in a block pays for the other's counts too. The errors are the square
    roots of the diagonal of its inverse over the entries of W_j above 10⁻⁶ of its largest
    (the others are at the bound W ≥ 0 and get 0). The abundances are held, so these are
    lower bounds where they are uncertain.
    """
    m, k = W.shape
    D = G @ W if G.ndim == 2 else np.einsum("jnm,mj->nj", G, W)  # channels × k
    Hb = np.asarray(Hb, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    v = np.zeros((k, D.shape[0]))
    # float32 products (errors need no more; half the memory traffic of these thin products),
    # on the shares of each block's model scaled to its largest (so float32 cannot underflow)
    Dt = (D / max(float(D.max()), 1e-300)).T.astype(np.float32)
    # thin products: BLAS threads cost more than they give (at 65 536 blocks × 1 900
    # channels, docs/validation.rst, issue 18)
    with one_blas_thread():
        for s in range(0, Hb.shape[0], chunk):
            h = Hb[s:s + chunk] / np.maximum(Hb[s:s + chunk].max(axis=1, keepdims=True), 1e-300)
            M = h.astype(np.float32) @ Dt  # blocks × channels, ∝ the blocks' models
            alpha = counts[s:s + chunk] / np.maximum(M.sum(axis=1, dtype=np.float64), 1e-300)
            np.divide(np.float32(1.0), M, out=M, where=M > 0)  # 1 / M where M > 0, else 0
            # (α h_bj)² / (α M_bc) = α h_bj² / M_bc
            v += ((alpha[:, None] * h**2).T).astype(np.float32) @ M
    v /= max(float(D.max()), 1e-300) ** 2  # back to the units of D (v ∝ 1 / D²)
    err = np.zeros((m, k))
    for j in range(k):
        Gj = G if G.ndim == 2 else G[j]
        w = W[:, j]
        if not np.any(w > 0) or not np.any(v[j] > 0):
            continue
        act = np.flatnonzero(w > 1e-6 * w.max())
        Ga = Gj[:, act]
        info = (Ga.T * v[j]) @ Ga
        cov = np.linalg.pinv(info, hermitian=True)
        err[act, j] = np.sqrt(np.maximum(np.diag(cov), 0.0))
    return err


def fit_W_columns(spectra: np.ndarray, G: np.ndarray | None) -> np.ndarray:
    """Non-negative least-squares fit of each spectrum (channels × k) on G (per phase if 3-D)."""
    if G is None:
        return np.maximum(spectra, 0.0)
    k = spectra.shape[1]
    W = np.zeros((G.shape[-1], k))
    for j in range(k):
        Gj = G if G.ndim == 2 else G[j]
        cs = np.linalg.norm(Gj, axis=0)
        cs = np.where(cs > 0, cs, 1.0)
        w, _ = nnls(Gj / cs[None, :], spectra[:, j], maxiter=50 * Gj.shape[1])
        W[:, j] = w / cs
    return W


def _binned(data: CompactCounts, shape: tuple[int, ...] | None, k: int):
    """Step 1: the counts binned in b × b blocks (b from :func:`bin_factor`); returns (blocks ×
    channels CSR counts, the block of every pixel, the number of blocks, b, the blocks' grid)."""
    p = data.n_pixels
    X = to_csr(data)
    b = bin_factor(shape, data.total / p, k)
    if b == 1:
        return X, np.arange(p), p, 1, shape
    block, nearest, nb = block_index(shape, b)
    inside = block >= 0
    A = sp.csr_array(
        (np.ones(int(inside.sum())), (block[inside], np.flatnonzero(inside))), shape=(nb, p)
    )
    grid = (nb,) if len(shape) == 1 else (shape[0] // b, shape[1] // b)
    return (A @ X).tocsr(), nearest, nb, b, grid


def _clusters(Xb, G: np.ndarray | None, n: int, k: int):
    """Step 2: (counts of every block, its normalised features, its label); with a physics G
    the labels of :func:`anchored_spa_labels` (0: the dominant cluster, 1 … k − 1: the most
    distinct blocks, −1: the others), else those of k-means."""
    wts = np.asarray(Xb.sum(axis=1)).ravel()
    F = _features(Xb, G, n)
    Fs = F.sum(axis=1)
    Fn = F / np.where(Fs > 0, Fs, 1.0)[:, None]
    labels = kmeans_maximin(Fn, wts, k)
    if G is not None and k > 1:
        labels = anchored_spa_labels(Fn, wts, labels, k)
    return wts, Fn, labels


def behind_share(Fn: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int,
                 depth: float = BEHIND_DEPTH) -> float:  # fmt: skip
    """The share of the counts in blocks that lie *behind* the dominant cluster.

    Each block's features are written as the dominant cluster's mean (label 0) plus
    coordinates along the directions to the k − 1 most distinct blocks (labels 1 … k − 1;
    least squares). In a map of phases in a matrix seen pure, the dominant cluster is a corner
    of the data: every block lies on its side of it (coordinates ≥ 0 but for noise). When
    every phase is present almost everywhere (smooth mixtures, a phase spread through the
    matrix) the dominant cluster is the map's average, and many blocks hold *less* of a phase
    than it does: a coordinate below ``−depth`` (a share ``depth`` of the way to the extreme
    block, the other way). Returns that share of the counts (0 for k < 2).
    """
    if k < 2 or not np.any(labels == 0):
        return 0.0
    anchor = np.average(Fn[labels == 0], axis=0, weights=weights[labels == 0] + 1e-300)
    dirs = []
    for c in range(1, k):
        sel = labels == c
        if np.any(sel):
            dirs.append(np.average(Fn[sel], axis=0, weights=weights[sel] + 1e-300) - anchor)
    if not dirs:
        return 0.0
    coords = np.linalg.lstsq(np.array(dirs).T, (Fn - anchor).T, rcond=None)[0]
    behind = np.any(coords < -depth, axis=0)
    total = float(weights.sum())
    return float(weights[behind].sum()) / total if total > 0 else 0.0


def dominant_mixed_share(data: CompactCounts, G: np.ndarray, k: int,
                         shape: tuple[int, ...] | None) -> tuple[float, int]:  # fmt: skip
    """:func:`behind_share` of the ``"auto"`` start's blocks and clusters (steps 1–2), before
    any fit: how far the dominant phase of this map is from being a corner of its data; and
    the number of blocks it was measured on."""
    Xb, _, nb, _, _ = _binned(data, shape, k)
    wts, Fn, labels = _clusters(Xb, G, data.n_channels, k)
    return behind_share(Fn, wts, labels, k), int(nb)


def auto_init(
    data: CompactCounts,
    G: np.ndarray | None,
    k: int,
    *,
    scale: float,
    shape: tuple[int, ...] | None,
    simplex_H: bool,
    wp: WParams,
    dtype,
    n_refine: int = 100,
    extrapolation: float = 0.5,
    mu: np.ndarray | None = None,
    eps_reg: float = 0.01,
    anchor_extrapolation: float | None = None,
    sparsity_on: str = "share",
    hold_far: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``"auto"`` start: returns (W internal, Ht pixels × k), both feasible.

    ``mu``, ``eps_reg`` and ``sparsity_on``: the log-sparsity prior used in the refinement on
    binned blocks (None: none, the default; see step 4 of the module docstring).
    ``extrapolation``: the fraction of the way to the composition bound of the moves of steps
    3b and 5; ``anchor_extrapolation``, if given, that of step 5 alone (0: no move away from the
    anchor after the refinement; see :func:`anchor_move`). ``hold_far``: step 5 leaves a phase
    whose bound lies beyond the far limit of :data:`BOUND_ABUNDANCE` in the blocks where it is
    (the caller's move after the fit decides for it; :data:`START_BOUND_LIMIT`).

    Raises
    ------
    KeyboardInterrupt
        When interrupted, also during the refinement (whose solver would otherwise return).
    """
    n = data.n_channels
    Xb, nearest, nb, b, grid = _binned(data, shape, k)
    per_block = float(b * b)
    wts, Fn, labels = _clusters(Xb, G, n, k)
    physics = G is not None and k > 1
    # mean spectrum (counts per original pixel) of each cluster, in scaled units
    sel = labels >= 0
    onehot = sp.csr_array(
        (np.ones(int(sel.sum())), (labels[sel], np.flatnonzero(sel))), shape=(k, nb)
    )
    S = np.asarray((onehot @ Xb).toarray() if sp.issparse(Xb) else onehot @ Xb).T  # n × k
    npx = np.bincount(labels[sel], minlength=k).astype(np.float64) * per_block
    S = S / np.maximum(npx, 1.0)[None, :] / scale
    # break exact ties between identical clusters deterministically
    S = S + 1e-6 * S.mean() * (1.0 + np.arange(k))[None, :] / k
    W = fit_W_columns(S, G)
    if not np.any(W > 0):
        W = np.ones_like(W)
    feasible_W(W, wp)
    # abundances of the blocks: the cluster memberships, softened
    Hb = np.full((nb, k), 0.2 / max(k - 1, 1))
    Hb[np.flatnonzero(sel), labels[sel]] = 0.8
    Hb[~sel] = 1.0 / k
    refine = b > 1 and n_refine > 0
    if MIXED_MOVE and physics and extrapolation > 0 and refine and mu is None:
        # before the refinement that the full-resolution fit follows: a minor cluster mixed
        # with phases other than the anchor alone (a film between two grains) is moved away
        # from the phases around it, or the unregularised refinement explains it away as a
        # mixture of them; the move away from the anchor follows the refinement
        around = surroundings(block_mixtures(Fn, labels, wts, k), grid)
        W, Hb, _ = extrapolate_minor_phases(W, np.asarray(Hb, dtype=np.float64), wp, 0,
                                            extrapolation, movable=mixed_clusters(around),
                                            reference=around)  # fmt: skip
    if refine:
        hmu = np.zeros(k) if mu is None else np.asarray(mu, dtype=np.float64)
        chosen = refine_subset(labels, MAX_REFINE_BLOCKS) if mu is None else None
        if chosen is not None:
            # many blocks (a large map): W is refined on a subset of them that keeps every
            # cluster (all the blocks of a small one), then all the blocks' abundances are
            # refitted with W held (step 4 of the module docstring)
            W, Hc = _refine(sp.csr_array(Xb[chosen]), wts[chosen], Hb[chosen], per_block, W, G,
                            k, scale=scale, simplex_H=simplex_H, wp=wp, mu=hmu, eps_reg=eps_reg,
                            sparsity_on=sparsity_on, n_iter=n_refine,
                            update_W=True)  # fmt: skip
            # the refitted blocks start from their refined abundances (as fractions)
            Hb = np.array(Hb, dtype=np.float64)
            Hc = np.asarray(Hc, dtype=np.float64)
            Hb[chosen] = Hc / np.maximum(Hc.sum(axis=1, keepdims=True), 1e-300)
            _, Hb = _refine(Xb, wts, Hb, per_block, W, G, k, scale=scale, simplex_H=simplex_H,
                            wp=wp, mu=hmu, eps_reg=eps_reg, sparsity_on=sparsity_on,
                            n_iter=min(n_refine, H_REFIT_ITER), update_W=False)  # fmt: skip
        else:
            W, Hb = _refine(Xb, wts, Hb, per_block, W, G, k, scale=scale, simplex_H=simplex_H,
                            wp=wp, mu=hmu, eps_reg=eps_reg, sparsity_on=sparsity_on,
                            n_iter=n_refine, update_W=True)  # fmt: skip
    gamma = extrapolation if anchor_extrapolation is None else anchor_extrapolation
    if physics and gamma > 0:
        Hb = np.asarray(Hb, dtype=np.float64)
        # the counts of the blocks fix how well W is known: a poorly known element does not
        # bound the move
        errors = spectra_errors(G, W, Hb, wts)
        far = 1.0 / BOUND_ABUNDANCE[0] - 1.0 if hold_far else np.inf
        W, Hb, _ = extrapolate_minor_phases(W, Hb, wp, 0, gamma, bounds=(0.0, far),
                                            errors=errors)  # fmt: skip
    Ht = np.ascontiguousarray(Hb[nearest], dtype=dtype)
    if not simplex_H:
        # per-pixel intensity from the pixel's counts
        ratio = data.pixel_sums / scale
        D = W if G is None else (G @ W if G.ndim == 2 else np.einsum("jnm,mj->nj", G, W))
        model = Ht.astype(np.float64) @ D.sum(axis=0)
        Ht = Ht * (ratio / np.maximum(model, 1e-300))[:, None].astype(dtype)
    return W, Ht


def mixed_clusters(around: np.ndarray, anchor: int = 0) -> np.ndarray:
    """(k,) the clusters step 3b moves away from the phases around them (``around``: the
    (k, k) :func:`surroundings`): those with a partner other than the anchor (≥
    :data:`PARTNER_SHARE` of the surroundings) and, with :data:`MIXED_MAINLY_OTHERS`, whose
    surroundings are mainly phases other than the anchor (the anchor holds less than half).

    A film on a grain boundary is seen between two grains, and the refinement can explain it
    away as their mixture; a particle is seen through the matrix (the anchor), and where it
    overlaps another particle that one holds a minor share of its surroundings. The particle's
    move is the one away from the anchor (step 5, or the fit's final move to the bound)."""
    C = np.asarray(around, dtype=np.float64)
    others = C >= PARTNER_SHARE
    others[anchor] = False
    out = others.any(axis=0)
    if MIXED_MAINLY_OTHERS:
        out &= C[anchor] < 0.5
    out[anchor] = False
    return out


def anchor_move(extrapolation: float, explicit: bool, hold_W: bool, final_move: bool) -> float:
    """The extrapolation of step 5 (the move away from the anchor after the refinement).

    ``extrapolation`` is the plan's (``init_extrapolation``, or its default when not
    ``explicit``); ``hold_W``: the spectra are held from the blocks (nothing moves them after
    the start); ``final_move``: the fit's move to the composition bound follows
    (``final_extrapolation > 0`` on the H simplex). With :data:`DEFER_TO_FINAL`, a default
    extrapolation is not applied when the full-resolution fit and its final move follow: the
    phases start as the mixtures the blocks show, and the final move takes them along the
    line of equal likelihood from the fitted spectra. A start already moved half way is
    carried further by the Laplacian during the fit, off that line (docs/validation.rst)."""
    if DEFER_TO_FINAL and not explicit and not hold_W and final_move:
        return 0.0
    return float(extrapolation)


def refine_subset(labels: np.ndarray, max_blocks: int) -> np.ndarray | None:
    """The blocks W is refined on when there are more than ``max_blocks`` (None otherwise).

    Every cluster of ``labels`` (−1, unlabelled, counts as one) keeps ``min(size, q)`` of its
    blocks, evenly spaced in block order, with the largest quota q that keeps the total within
    ``max_blocks``: a small cluster (particles) keeps all its blocks, the matrix is thinned.
    Deterministic; returns the chosen block indices, increasing.
    """
    n = labels.size
    if n <= max_blocks:
        return None
    groups = [np.flatnonzero(labels == v) for v in np.unique(labels)]
    sizes = np.array([g.size for g in groups])
    q = 0
    lo, hi = 0, int(sizes.max())
    while lo <= hi:  # largest q with sum(min(size, q)) <= max_blocks
        mid = (lo + hi) // 2
        if np.minimum(sizes, mid).sum() <= max_blocks:
            q, lo = mid, mid + 1
        else:
            hi = mid - 1
    picks = []
    for g in groups:
        m = min(g.size, q)
        if m > 0:
            picks.append(g[np.floor((np.arange(m) + 0.5) * g.size / m).astype(np.int64)])
    return np.sort(np.concatenate(picks))


def _refine(
    Xb: sp.csr_array, wts: np.ndarray, Hb: np.ndarray, per_block: float, W: np.ndarray,
    G: np.ndarray | None, k: int, *, scale: float, simplex_H: bool, wp: WParams,
    mu: np.ndarray, eps_reg: float, n_iter: int, update_W: bool, sparsity_on: str = "share",
) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: ``n_iter`` iterations of the solver on binned blocks of ``per_block`` pixels.

    ``W`` in the fit's internal units (``scale``), ``Hb`` (blocks × k) block abundances as
    fractions; ``update_W=False`` holds W. Returns (W in the fit's units, Hb).

    Raises
    ------
    KeyboardInterrupt
        When the solver was interrupted.
    """
    nb = Xb.shape[0]
    bdata = as_compact(Xb)
    bscale = bdata.total / (nb * k)
    if not bdata.total > 0:
        return W, Hb
    fac = scale * per_block / bscale
    Wb = W / fac if (simplex_H or not wp.simplex) else W.copy()
    if not simplex_H:
        Hb = Hb * (wts / max(wts.mean(), 1e-300))[:, None]
    feasible_W(Wb, wp)
    feasible_H(Hb, simplex_H, None, wp.eps)
    hp = HParams(
        1.0 / bscale, bdata.total / bscale, mu, eps_reg, 0.0,
        *empty_adjacency(nb), simplex_H, None, wp.eps, 1e-13, None, sparsity_on,
        bdata.total / bscale / nb,
    )  # fmt: skip
    res = solve(bdata, G, Wb, Hb.astype(np.float64), hp, wp, max_iter=n_iter, tol=0.0,
                loss_every=n_iter, update_W_=update_W)  # fmt: skip
    if res.stop_reason == "interrupted":
        # Ctrl-C during the start: no fit to keep yet, so the interrupt ends the fit
        raise KeyboardInterrupt("interrupted during the start (binned refinement)")
    if not update_W:
        return W, res.Ht
    W = res.W * fac if (simplex_H or not wp.simplex) else res.W
    feasible_W(W, wp)
    return W, res.Ht


def random_init(
    data: CompactCounts,
    G: np.ndarray | None,
    k: int,
    *,
    scale: float,
    rows: int,
    simplex_H: bool,
    wp: WParams,
    dtype,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random start, scaled so the model's total matches the data's."""
    W = rng.uniform(0.1, 1.0, size=(rows, k))
    Ht = rng.uniform(0.1, 1.0, size=(data.n_pixels, k))
    feasible_W(W, wp)
    feasible_H(Ht, simplex_H, None, wp.eps)
    D = W if G is None else (G @ W if G.ndim == 2 else np.einsum("jnm,mj->nj", G, W))
    model_total = float((Ht @ D.sum(axis=0)).sum())
    target = data.total / scale
    if model_total > 0:
        f = target / model_total
        if simplex_H or not wp.simplex:
            W *= f
        else:
            Ht *= f
    return W, np.ascontiguousarray(Ht, dtype=dtype)

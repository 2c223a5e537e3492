"""Binned levels before the full-resolution iterations: a coarse-to-fine start of the
abundances at low dose (W held), and the joint fit of a large map on the map binned b × b
(:func:`joint_level`, at the end of this module).

Where the spectra are held (``spectra_from="blocks"``, below 100 counts per pixel) the fit is
a problem in H alone, and where λ is large (≥ :data:`._plan.RED_BLACK_LAMBDA`, a few counts
per pixel) its maps converge like a diffusion: the slow modes are the long-wavelength ones,
each iteration at full resolution moving them by a fraction of order (data curvature) /
(λ · degree). On a map binned b × b those wavelengths are b times shorter, a pass costs b²
times less and λ is b² times smaller in the binned problem's units, so they converge in fewer,
cheaper iterations there. The schedule (nested iteration, the first half of a multigrid
cycle), which replaces the H-only warm-up of the ``"auto"`` start:

1. the start's abundances are averaged over the blocks of the coarsest level;
2. at each level, from the coarsest to 2 × 2, H is fitted to the binned counts with W held
   (:func:`._solver.iterate` with the fit's stopping rule and momentum, at most
   :data:`COARSE_MAX_ITER` iterations), then interpolated bilinearly to the next finer level
   (a convex combination of simplex vectors stays in the simplex);
3. the full-resolution fit starts from the last interpolation.

The model is unchanged by binning: a block of b × b pixels with one abundance vector h
receives b² · (G W h) counts, so the binned problem has data scale b² · scale and the same W
(internal units). λ keeps its weight *in counts* (Σ over the grid's edges of ‖Δh‖² of a smooth
map does not depend on the pixel size in two dimensions), so in the binned problem's units it
is λ / b²; μ (per pixel and per count of data scale) stays. Blocks cut by the map's border
hold fewer pixels: their counts are scaled up to b² pixels' worth.

Only the start of the full-resolution iterations changes: their objective, stopping rule and
monotone updates are the fit's own. The binned counts come from the data source
(``source.binned``, one read for all the levels), so an in-memory and a chunked fit start from
the same H.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from esmpy_hs.nmf._blocksum import block_sums
from esmpy_hs.nmf._data import CompactCounts, _finish_sparse
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._solver import HParams, iterate, memory_pass

#: levels b = 2, 4, 8, … are used while λ / b² ≥ COARSE_LAMBDA (scaled units; at the default λ
#: of 1 count per pixel, λ ≈ 60, down to b = 16) and the binned grid keeps ≥ COARSE_MIN_SIDE
#: pixels a side
COARSE_LAMBDA = 0.2
COARSE_MIN_SIDE = 16
#: iterations at most per coarse level (levels run to their own stopping rule, at most 300
#: iterations, cost more than they saved at 512² × 4096; see docs/validation.rst)
COARSE_MAX_ITER = 100


def levels(shape: tuple[int, ...] | None, lam: float) -> list[int]:
    """Bin factors of the coarse levels, coarsest first (powers of two; [] for none: no 2-D
    grid or λ too small for b = 2)."""
    if shape is None or len(shape) != 2 or lam <= 0:
        return []
    out = []
    b = 2
    while lam / (b * b) >= COARSE_LAMBDA and min(shape) // b >= COARSE_MIN_SIDE:
        out.append(b)
        b *= 2
    return out[::-1]


def coarse_shape(shape: tuple[int, int], b: int) -> tuple[int, int]:
    return (-(-shape[0] // b), -(-shape[1] // b))


def block_of(shape: tuple[int, int], b: int) -> np.ndarray:
    """The block (row-major on the coarse grid) of every pixel; border blocks may be partial."""
    rows, cols = shape
    cc = -(-cols // b)
    return ((np.arange(rows)[:, None] // b) * cc + (np.arange(cols)[None, :] // b)).ravel()


def binned_counts(parts: list[tuple[np.ndarray, sp.csr_array]], n_blocks: int,
                  weights: np.ndarray, n_channels: int, float_dtype) -> CompactCounts:  # fmt: skip
    """The binned counts from per-chunk parts ``(block ids, CSR of their sums)``, each block's
    row multiplied by ``weights`` (b² / pixels in the block)."""
    ids = np.concatenate([q[0] for q in parts])
    big = sp.csr_array(sp.vstack([q[1] for q in parts], format="csr"))
    S = sp.csr_array((weights[ids], (ids, np.arange(ids.size))), shape=(n_blocks, ids.size))
    X = sp.csr_array(S @ big)
    X.sum_duplicates()
    X.sort_indices()
    data = X.data
    if not np.all(weights == 1.0):
        data = data.astype(float_dtype)
    return _finish_sparse(X.indptr.astype(np.int64), X.indices, data, n_channels, n_blocks,
                          float_dtype)  # fmt: skip


def restrict(Ht: np.ndarray, block: np.ndarray, n_blocks: int) -> np.ndarray:
    """Mean of H over every block (pixels × k → blocks × k, float64)."""
    cnt = np.bincount(block, minlength=n_blocks).astype(np.float64)
    out = np.empty((n_blocks, Ht.shape[1]))
    for j in range(Ht.shape[1]):
        out[:, j] = np.bincount(block, weights=Ht[:, j], minlength=n_blocks) / cnt
    return out


def _axis_weights(n_fine: int, n_coarse: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation along one axis: left index, right index, weight of the right."""
    x = (np.arange(n_fine) + 0.5) / f - 0.5
    x = np.clip(x, 0.0, n_coarse - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_coarse - 1)
    return i0, i1, x - i0


def prolong(Hc: np.ndarray, cshape: tuple[int, int], fshape: tuple[int, int],
            f: int) -> np.ndarray:  # fmt: skip
    """Bilinear interpolation of H from a grid binned by ``f`` to the finer grid ``fshape``."""
    k = Hc.shape[1]
    G = Hc.reshape(cshape[0], cshape[1], k)
    r0, r1, wr = _axis_weights(fshape[0], cshape[0], f)
    c0, c1, wc = _axis_weights(fshape[1], cshape[1], f)
    rows = G[r0] * (1 - wr)[:, None, None] + G[r1] * wr[:, None, None]
    out = rows[:, c0] * (1 - wc)[None, :, None] + rows[:, c1] * wc[None, :, None]
    return out.reshape(-1, k)


def level_params(hp: HParams, b: int, cshape: tuple[int, int], total: float,
                 red_black_lambda: float) -> HParams:
    """The H-step parameters of the level binned by ``b`` (see the module docstring)."""
    indptr, indices = grid_adjacency(cshape)
    lam = hp.lam / (b * b)
    # red-black sweeps where the full-resolution rule would choose them at this λ
    colour = grid_colouring(cshape) if hp.colour is not None and lam >= red_black_lambda else None
    return replace(hp, inv_scale=hp.inv_scale / (b * b),
                   total_scaled=total * hp.inv_scale / (b * b), lam=lam, adj_indptr=indptr,
                   adj_indices=indices, fixed_Ht=None, colour=colour)  # fmt: skip


def coarse_start(plan, source, W: np.ndarray, Ht: np.ndarray, factors: list[int],
                 red_black_lambda: float) -> tuple[np.ndarray, list[tuple[int, int]], bool]:
    """H at full resolution from the coarse levels ``factors`` (coarsest first), W held.

    Returns ``(Ht, [(b, iterations), …], interrupted)``; after an interrupt ``Ht`` is the
    start's.
    """
    s = plan.settings
    shape = s.shape
    # one read of the data: the sums over the finest level's blocks, binned further for the
    # coarser levels (their blocks are unions of the finest ones)
    fine = factors[-1]
    fshape = coarse_shape(shape, fine)
    nf = fshape[0] * fshape[1]
    sums = binned_counts(source.binned(block_of(shape, fine)), nf, np.ones(nf), s.n, s.dtype)
    H = None
    prev = None
    info: list[tuple[int, int]] = []
    for b in factors:
        cs = coarse_shape(shape, b)
        block = block_of(shape, b)
        nb = cs[0] * cs[1]
        if H is None:
            H = restrict(np.asarray(Ht, dtype=np.float64), block, nb)
        else:
            H = prolong(H, coarse_shape(shape, prev), cs, prev // b)
        cnt = np.bincount(block, minlength=nb).astype(np.float64)
        parts = [block_sums(sums, block_of(fshape, b // fine))]
        data = binned_counts(parts, nb, (b * b) / cnt, s.n, s.dtype)
        hp = level_params(plan.hp, b, cs, data.total, red_black_lambda)
        r = iterate(memory_pass(data, hp), s.G, W, np.ascontiguousarray(H, dtype=s.dtype), hp,
                    plan.wp, max_iter=COARSE_MAX_ITER, tol=s.tol, move_tol=plan.move_tol,
                    momentum=s.momentum, update_W_=False, loss_every=s.loss_every)  # fmt: skip
        if r.stop_reason == "interrupted":
            return Ht, info, True
        info.append((b, r.n_iter))
        H = np.asarray(r.Ht, dtype=np.float64)
        prev = b
    Hf = prolong(H, coarse_shape(shape, prev), shape, prev)
    return np.ascontiguousarray(Hf, dtype=s.dtype), info, False


def joint_level(plan, source, W: np.ndarray, Ht: np.ndarray, b: int, view, warmup: int,
                red_black_lambda: float, progress: bool = False,
                desc: str = "SmartNMF") -> tuple[np.ndarray, np.ndarray, int, bool]:  # fmt: skip
    """The joint fit (W and H) on the map binned ``b`` × ``b``, from the start ``(W, Ht)``.

    A large map's spectra converge slowly at full resolution: a phase far from its answer
    after the start moves there over more iterations the larger the map (docs/validation.rst,
    "A binned level for the joint fit at scale"). On the binned map the same model holds (see
    the module docstring: data scale b² · scale, λ / b², the same W), and a pass costs about
    b² times less once the blocks' spectra are dense. The start's abundances are averaged
    over the blocks, ``warmup`` H-only iterations fit them to the binned counts, then W and H
    are updated with the fit's stopping rules, momentum and movement rule (``view``: the fit's
    view of the spectra at their bound, or None). No move to the bound here: the
    full-resolution fit that follows makes it, from its own spectra.

    Returns ``(W, Ht, iterations, interrupted)``: the binned fit's W (internal units, as it
    stands: not moved to the bound) and its abundances interpolated bilinearly to the full
    grid (pixels × k, float64).
    """
    s = plan.settings
    shape = s.shape
    cs = coarse_shape(shape, b)
    nb = cs[0] * cs[1]
    block = block_of(shape, b)
    cnt = np.bincount(block, minlength=nb).astype(np.float64)
    data = binned_counts(source.binned(block), nb, (b * b) / cnt, s.n, s.dtype)
    hp = level_params(plan.hp, b, cs, data.total, red_black_lambda)
    H = np.ascontiguousarray(restrict(np.asarray(Ht, dtype=np.float64), block, nb), dtype=s.dtype)
    run_pass = memory_pass(data, hp)
    if warmup > 0:
        r0 = iterate(run_pass, s.G, W, H, hp, plan.wp, max_iter=warmup, tol=0.0,
                     update_W_=False, losses=False)  # fmt: skip
        if r0.stop_reason == "interrupted":
            return W, Ht, 0, True
        H = r0.Ht
    r = iterate(run_pass, s.G, W, H, hp, plan.wp, max_iter=s.max_iter, tol=s.tol,
                move_tol=plan.move_tol, momentum=s.momentum, loss_every=s.loss_every,
                move_view=view, progress=progress,
                desc=f"{desc}, binned {b} × {b}")  # fmt: skip
    Hf = prolong(np.asarray(r.Ht, dtype=np.float64), cs, shape, b)
    return r.W, Hf, r.n_iter, r.stop_reason == "interrupted"

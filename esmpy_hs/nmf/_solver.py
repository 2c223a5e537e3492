"""The iteration loop, written so a chunk-by-chunk driver can reuse every step.

One iteration (the in-memory loop :func:`solve` does exactly this with a single chunk)::

    D = _updates.compute_D(G, W, dtype)            # channels × k, working dtype
    colsum = D.sum(0, dtype=float64)
    for each pixel chunk [start, stop):
        part = h_pass(data.chunk(start, stop), D, colsum, Ht, start, Ht_new[start:stop], hp,
                      want_loss=...)              # H step of the chunk + partial sums
    tot = combine([part, ...])                     # reduce: R Hᵀ, H 1, loss parts
    W = _updates.update_W(W, G, tot.RHt, tot.hsum, Gt1=Gt1, **wp.kwargs())
    Ht, Ht_new = Ht_new, Ht

The H step of a chunk needs only D, the chunk's counts and the *previous* H of all pixels (the
Laplacian reads the neighbours), so the chunked iteration is the same computation as the
in-memory one (up to the order of floating-point sums over chunks). There is one loop,
:func:`iterate`, which takes the pass over the data as a function: :func:`solve` gives it the
whole map as one chunk, the chunked driver its pass over the dask chunks. ``want_loss``
returns the loss parts of the iterate entering the pass;
``F = _objective.assemble(tot.loss, hp.total_scaled)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np

from esmpy_hs.nmf import _kernels, _model_smoothing
from esmpy_hs.nmf._blas import with_one_blas_thread
from esmpy_hs.nmf._laplacian import gram
from esmpy_hs.nmf._model_smoothing import ModelSmoothing
from esmpy_hs.nmf._objective import assemble
from esmpy_hs.nmf._prior import counts_prior, log_r_constant, phase_eps, w_tangent
from esmpy_hs.nmf._updates import colsums, compute_D, g_colsums, update_W

#: minimum number of pixel blocks per pass (fixed so results do not depend on the thread count)
MIN_BLOCKS = 16
#: the movement rule (:func:`iterate`, ``move_tol``) compares the iterate with the one this many
#: iterations before
MOVE_WINDOW = 10
#: growth of the extrapolation β per accepted step (:func:`iterate`, ``momentum``)
MOMENTUM_GROWTH = 1.05
#: largest extrapolation β (:func:`iterate`, ``momentum``; caps of 2 and 3 undid steps at most
#: refreshes of the absorption and ended further from the answer, see docs/validation.rst)
MOMENTUM_MAX = 1.0
#: below this much work (≈ nonzeros) a chunk is processed on one thread: waking the thread pool
#: costs up to milliseconds on a loaded machine. The blocks, hence the results, are the same.
SERIAL_WORK = 200_000
#: below this many pixels the extrapolation of H runs on one thread. It follows a pass, whose
#: threads are then awake (identical results; measured in docs/validation.rst, issue 18)
EXTRAPOLATE_SERIAL_ROWS = 8192
#: extrapolate H inside the pass that updates it (the ``Hy_out`` of the kernels: while a pixel's
#: values are in registers) where the pass offers it (:func:`memory_pass`); False: a pass of its
#: own after each update (:func:`extrapolate`, the loop before; kept for same-process
#: baselines, see docs/validation.rst, issue 18). The same iterates.
FUSED_EXTRAPOLATION = True
#: evaluate F of the old G where the callback replaced G (the end of an epoch, see
#: :func:`iterate`) in the next pass, which evaluates F of the new G at the same iterate (the
#: kernels' ``D2``), instead of in a loss-only pass of its own; False: the loss-only pass (the
#: loop before; same decisions, same iterates)
FOLD_CLOSING_LOSS = True
#: sum the per-block ``R Hᵀ`` of a pass in compiled code (:func:`._kernels.sum_blocks`, the same
#: sums in the same order) instead of NumPy's reduction; False: ``acc.sum(axis=0)`` (before)
COMPILED_BLOCK_SUM = True
#: the active set of the H step (loops that update W, under the H simplex without fixed entries,
#: with the movement rule on and every pixel moving at once, not red-black sweeps; in memory and
#: through the chunk engines alike): a pixel whose last update moved none of its abundances by more
#: than the movement rule's per-iteration share (``move_tol[1] / MOVE_WINDOW``, times
#: :data:`ACTIVE_SHARE`) is held — no ratio sweep, no solve: about 2/3 of its share of a pass —
#: until the next full sweep, which every pass with the loss and every :data:`ACTIVE_FULL_EVERY`-th
#: iteration is. Holding a pixel keeps the descent (the H step's majoriser separates per pixel);
#: the iterates change (docs/validation.rst, issue 18). False: every pixel at every pass (before).
ACTIVE_SET = True
#: a pixel is held when its last move is below this share of ``move_tol[1] / MOVE_WINDOW``
ACTIVE_SHARE = 0.3
#: every this many iterations (and at every evaluation of F) every pixel is updated
ACTIVE_FULL_EVERY = 5


def h_rtol(dtype) -> float:
    """Tolerance of the simplex sums in the H step (relative to the sum, before the final
    exact rescaling of the column): 1e-10 in float64, 1e-6 in float32. Tighter values cost
    one more Newton step per pixel and change the iterate by less than the rounding of F."""
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-6


@dataclass
class HParams:
    """Everything the H step needs besides the data, D and H (scaled units).

    Attributes
    ----------
    inv_scale : float
        1 / data scale (the kernels scale the counts on the fly).
    total_scaled : float
        Σ Y / scale (constant of the Kullback-Leibler divergence).
    mu : ndarray (k,)
        Log-prior weights.
    eps_reg : float
    lam : float
        Laplacian weight λ.
    adj_indptr, adj_indices : ndarray
        Pixel graph (global pixel indices), see :mod:`._laplacian`.
    simplex : bool
        H simplex.
    fixed_Ht : ndarray (pixels × k) or None
        Fixed H entries (NaN = free), pixel-major, global.
    eps : float
        Lower bound of H and W.
    rtol : float
        Tolerance of the simplex sums.
    colour : ndarray (pixels,) of uint8, or None
        A 2-colouring of the pixel graph (global): every update is then a red-black sweep, the
        pixels of colour 0 with their neighbours held, then those of colour 1 with the new
        colour-0 values (see :func:`sweep`). None: every pixel moves at once.
    sparsity_on : {"share", "counts"}
        The log prior on each phase's share ``μ log(h + ε_reg)`` or on its counts
        ``μ log(r h + ε_reg)`` (see :mod:`._prior`).
    mean_counts : float
        s̄, the map's mean pixel counts (scaled units) of ``r = 1ᵀD / s̄`` (``"counts"`` only).
    model : ModelSmoothing or None
        The smoothing prior on the model's counts (``smoothing="model"``,
        :mod:`._model_smoothing`) in place of the Laplacian of the shares; None: the Laplacian.
    """

    inv_scale: float
    total_scaled: float
    mu: np.ndarray
    eps_reg: float
    lam: float
    adj_indptr: np.ndarray
    adj_indices: np.ndarray
    simplex: bool
    fixed_Ht: np.ndarray | None
    eps: float
    rtol: float
    colour: np.ndarray | None = None
    sparsity_on: str = "share"
    mean_counts: float = 1.0
    model: ModelSmoothing | None = None


@dataclass
class WParams:
    """Everything the W step needs besides G, W and the reduced sums."""

    simplex: bool
    simplex_rows: np.ndarray
    fixed: np.ndarray | None
    eps: float
    rtol: float

    def kwargs(self) -> dict:
        return {
            "simplex": self.simplex,
            "simplex_rows": self.simplex_rows,
            "fixed": self.fixed,
            "eps": self.eps,
            "rtol": self.rtol,
        }


@dataclass
class PassResult:
    """Partial sums of one chunk (or their total after :func:`combine`)."""

    RHt: np.ndarray  # channels × k, float64
    hsum: np.ndarray  # k, float64
    loss: np.ndarray  # 4, float64 (see _kernels)
    loss2: np.ndarray | None = None  # 4, float64: the loss parts at D2 (see h_pass)


_NO_COLOUR = np.zeros(0, dtype=np.uint8)
_NO_MOVES = np.zeros(0)


def n_blocks(npx: int) -> int:
    """Number of parallel blocks for a chunk of ``npx`` pixels."""
    return max(1, min(npx, max(MIN_BLOCKS, numba.get_num_threads())))


def h_pass(
    chunk: tuple,
    D: np.ndarray,
    colsum: np.ndarray,
    Ht: np.ndarray,
    start: int,
    Ht_out: np.ndarray,
    hp: HParams,
    *,
    update_h: bool = True,
    accumulate: bool = True,
    want_loss: bool = False,
    phase: int = -1,
    Hy_out: np.ndarray | None = None,
    beta: float = 0.0,
    D2: np.ndarray | None = None,
    moved: np.ndarray | None = None,
    skip_tol: float = 0.0,
) -> PassResult:
    """H step of one pixel chunk and its partial sums.

    Parameters
    ----------
    chunk : tuple
        ``CompactCounts.chunk(start, stop)``: ``("sparse", indptr, indices, counts)`` or
        ``("dense", dense_rows)``.
    D : ndarray (channels × k), C-contiguous, working dtype
        Phase spectra (scaled units).
    colsum : ndarray (k,), float64
        ``D.sum(0)``.
    Ht : ndarray (pixels × k), working dtype
        Previous H, all pixels.
    start : int
        Global index of the chunk's first pixel.
    Ht_out : ndarray (chunk pixels × k), working dtype, C-contiguous
        Receives the chunk's new H (must not overlap ``Ht``, except in phase 1).
    hp : HParams
    update_h, accumulate, want_loss : bool
        See :func:`._kernels.h_pass_sparse`.
    phase : int
        −1 (every pixel moves), or 0 / 1: the half of a red-black sweep (needs ``hp.colour``),
        see :func:`._kernels.h_pass_sparse`.
    Hy_out : ndarray (chunk pixels × k), working dtype, or None
        Receives the extrapolation ``H⁺ + beta (H⁺ − H)`` of the chunk's updated pixels,
        projected on the simplex (needs ``update_h``, the H simplex and no fixed entries; see
        :func:`._kernels.h_pass_sparse`).
    beta : float
        The extrapolation's β (with ``Hy_out``).
    D2 : ndarray (channels × k), working dtype, or None
        With ``want_loss``: the loss parts of the entering H are also computed at ``D2``
        (``loss2`` of the result).
    moved : ndarray (chunk pixels,), float64, or None
        The active set (:data:`ACTIVE_SET`): receives the largest move of the abundances of
        every pixel of the chunk the pass updates; with ``skip_tol`` > 0 (and no loss) a pixel
        whose entry is below ``skip_tol`` is held instead (see :func:`._kernels.h_pass_sparse`).
    skip_tol : float
        See ``moved`` (0: every pixel is updated).
    """
    D = np.ascontiguousarray(D)  # the sparse pass reads it through a flat view
    k = D.shape[1]
    n = D.shape[0]
    npx = chunk[1].shape[0] - 1 if chunk[0] == "sparse" else chunk[1].shape[0]
    nb = n_blocks(npx)
    two = D2 is not None and want_loss
    acc = np.empty((nb, n, k), dtype=D.dtype)
    hsum = np.empty((nb, k))
    loss = np.empty((nb, 6 if two else 4))
    if npx == 0:
        return PassResult(np.zeros((n, k)), np.zeros(k), np.zeros(4),
                          np.zeros(4) if two else None)  # fmt: skip
    if Hy_out is None:
        Hy_out = np.empty((0, k), dtype=Ht.dtype)
    elif not (update_h and hp.simplex and hp.fixed_Ht is None):
        raise ValueError("the fused extrapolation needs update_h, the H simplex and no fixed H")
    if two:
        D2 = np.ascontiguousarray(D2, dtype=D.dtype)
        colsum2 = colsums(D2)
    else:
        D2, colsum2 = np.empty((0, k), dtype=D.dtype), colsum
    fixed = (
        np.empty((0, k), dtype=Ht.dtype)
        if hp.fixed_Ht is None
        else np.ascontiguousarray(hp.fixed_Ht[start : start + npx], dtype=Ht.dtype)
    )
    if phase >= 0 and hp.colour is None:
        raise ValueError("a red-black phase needs the pixels' colours (hp.colour)")
    colour = _NO_COLOUR if hp.colour is None else hp.colour
    moved = _NO_MOVES if moved is None else moved
    if moved.shape != (0,) and (moved.shape != (npx,) or moved.dtype != np.float64):
        raise ValueError("moved must hold one float64 per pixel of the chunk")
    on_counts = hp.sparsity_on == "counts"
    eps_j = phase_eps(hp.sparsity_on, hp.eps_reg, colsum, hp.mean_counts)
    reg2 = None
    if on_counts and want_loss:
        # the prior's part that the kernels leave out: Σ μ log r per pixel whose loss they
        # count (a red-black phase counts its colour); at D2, the whole prior (its r differs),
        # from the entering H before the pass writes it
        counted = (slice(None) if phase < 0
                   else hp.colour[start : start + npx] == phase)  # fmt: skip
        n_counted = npx if phase < 0 else int(np.count_nonzero(counted))
        reg_const = n_counted * log_r_constant(hp.mu, colsum, hp.mean_counts)
        if two:
            reg2 = counts_prior(Ht[start : start + npx][counted], hp.mu, hp.eps_reg, colsum2,
                                hp.mean_counts)  # fmt: skip
    lam, off, model_loss = hp.lam, np.empty((0, k)), None
    if hp.model is not None and hp.lam > 0:
        # the smoothing of the model's counts: the kernels' Laplacian at λρ, plus the offset
        # of every pixel's linear coefficient; its loss replaces the kernels' (._model_smoothing)
        M = hp.model.metric(D)
        lam, rho = _model_smoothing.kernel_weight(hp.lam, M)
        if update_h:
            off = _model_smoothing.h_offset(hp.lam, M, rho, Ht, hp.adj_indptr, hp.adj_indices,
                                            start, start + npx)  # fmt: skip
        if want_loss:
            counted = None if phase < 0 else hp.colour[start : start + npx] == 0
            factor = 0.25 if phase < 0 else (0.5 if phase == 0 else 0.0)
            model_loss = [
                _model_smoothing.loss(hp.lam, Mx, Ht, hp.adj_indptr, hp.adj_indices, start,
                                      start + npx, counted, factor)
                if factor > 0 else 0.0
                for Mx in ((M, hp.model.metric(D2)) if two else (M,))
            ]  # fmt: skip
    common = (
        hp.inv_scale, hp.mu, eps_j, lam, hp.adj_indptr, hp.adj_indices, colour,
        int(phase), hp.simplex, fixed, hp.eps, hp.rtol, update_h, accumulate, want_loss,
        acc, hsum, loss, (0,) * k, Hy_out, float(beta), D2, colsum2, moved, float(skip_tol),
        off,
    )  # fmt: skip
    if chunk[0] == "sparse":
        _, indptr, indices, counts = chunk
        work = int(indptr[-1] - indptr[0]) + 8 * npx
        kern = _kernels.h_pass_sparse if work > SERIAL_WORK else _kernels.h_pass_sparse_serial
        kern(indptr, indices, counts, D, colsum, Ht, start, Ht_out, *common)
    else:
        work = chunk[1].size // 2 + 8 * npx
        kern = _kernels.h_pass_dense if work > SERIAL_WORK else _kernels.h_pass_dense_serial
        kern(chunk[1], D, colsum, Ht, start, Ht_out, *common)
    tot = loss.sum(axis=0)
    if on_counts and want_loss:
        tot[2] += reg_const
    loss3_2 = tot[3]
    if model_loss is not None:
        tot[3] = model_loss[0]
        loss3_2 = model_loss[-1]
    loss2 = np.array([tot[4], tot[5], tot[2] if reg2 is None else reg2, loss3_2]) if two \
        else None  # fmt: skip
    if COMPILED_BLOCK_SUM:
        RHt = np.empty((n, k))
        _kernels.sum_blocks(acc.reshape(nb, n * k), RHt.reshape(n * k))
    else:
        RHt = acc.sum(axis=0, dtype=np.float64)
    return PassResult(RHt, hsum.sum(axis=0), tot[:4], loss2)


def combine(parts: list[PassResult]) -> PassResult:
    """Reduce the partial sums of several chunks (in the given order)."""
    RHt = parts[0].RHt.copy()
    hsum = parts[0].hsum.copy()
    loss = parts[0].loss.copy()
    two = all(q.loss2 is not None for q in parts)
    loss2 = parts[0].loss2.copy() if two else None
    for q in parts[1:]:
        RHt += q.RHt
        hsum += q.hsum
        loss += q.loss
        if two:
            loss2 += q.loss2
    return PassResult(RHt, hsum, loss, loss2)


@dataclass
class SolveResult:
    """Output of :func:`solve`."""

    W: np.ndarray
    Ht: np.ndarray
    G: np.ndarray | None
    n_iter: int
    loss_history: list[float] = field(default_factory=list)
    loss_iterations: list[int] = field(default_factory=list)
    stop_reason: str = "max_iter"
    # after a move of the minor phases to their bound (see _fit.run): the move of each phase,
    # the iterations and the final F of the refit of the abundances
    shift: np.ndarray | None = None
    final_iter: int = 0
    final_loss: float | None = None
    # every MOVE_WINDOW iterations: (iteration, largest change of a spectrum's angle in degrees,
    # root-mean-square and largest change of the abundance fractions) since the check before
    move_history: list[tuple[int, float, float, float]] = field(default_factory=list)
    # returns to the last checked iterate because F rose after extrapolations (see iterate)
    restarts: int = 0
    # the coarse-to-fine start (see _fit.run): (bin factor, iterations) of each level
    coarse: list[tuple[int, int]] = field(default_factory=list)


def evaluate_loss(data, G, W, Ht, hp: HParams) -> float:
    """F(W, H) with one loss-only kernel pass."""
    D = compute_D(G, W, Ht.dtype)
    colsum = colsums(D)
    res = h_pass(
        data.chunk(0, data.n_pixels), D, colsum, Ht, 0, Ht, hp,
        update_h=False, accumulate=False, want_loss=True,
    )  # fmt: skip
    return assemble(res.loss, hp.total_scaled)


#: one pass over the data: ``run_pass(D, colsum, Ht, Ht_out, *, update_h, accumulate,
#: want_loss, phase=-1) -> PassResult`` (``Ht_out`` may be None when ``update_h`` is False;
#: ``phase`` as in :func:`h_pass`). A pass whose attribute ``fused`` is True also takes
#: ``Hy_out``, ``beta`` and ``D2`` (as :func:`h_pass`; :func:`memory_pass` does); one whose
#: attribute ``active_set`` is True takes ``moved`` (one float64 per pixel of the map) and
#: ``skip_tol`` (the active set, :data:`ACTIVE_SET`; every pass of this package does)
PassFn = Callable[..., PassResult]


def sweep(run_pass: PassFn, hp: HParams, D, colsum, Ht, Ht_out, *, update_h: bool,
          accumulate: bool, want_loss: bool, **fused) -> PassResult:  # fmt: skip
    """One update of H (and the sums of the W step) by ``run_pass``.

    With ``hp.colour`` (a 2-colouring of the pixel grid) and λ > 0 the update is a red-black
    sweep: the pixels of colour 0 move with their neighbours held (pass 1, which also copies
    the others to ``Ht_out``), then those of colour 1 with the new colour-0 values (pass 2, in
    ``Ht_out``). Each pass minimises a majorant of F in its pixels exactly in the Laplacian,
    so F cannot rise, and the smoothing spreads twice per iteration with a curvature half that
    of the simultaneous update's majorant: fewer iterations where the Laplacian dominates (low
    dose). Otherwise (and for loss-only passes) one pass with every pixel at once.

    ``fused``: ``Hy_out``, ``beta``, ``D2``, ``moved``, ``skip_tol`` of a pass that takes them
    (see :data:`PassFn`; entries that are None are not passed); each colour of a sweep
    extrapolates its pixels and holds its own pixels of the active set.
    """
    fused = {key: v for key, v in fused.items() if v is not None}
    if hp.colour is None or hp.lam <= 0 or not update_h:
        return run_pass(D, colsum, Ht, Ht_out, update_h=update_h, accumulate=accumulate,
                        want_loss=want_loss, **fused)  # fmt: skip
    first = run_pass(D, colsum, Ht, Ht_out, update_h=True, accumulate=accumulate,
                     want_loss=want_loss, phase=0, **fused)  # fmt: skip
    second = run_pass(D, colsum, Ht_out, Ht_out, update_h=True, accumulate=accumulate,
                      want_loss=want_loss, phase=1, **fused)  # fmt: skip
    return combine([first, second])


def memory_pass(data, hp: HParams) -> PassFn:
    """The pass of the in-memory fit: the whole of ``data`` (CompactCounts) as one chunk."""
    chunk = data.chunk(0, data.n_pixels)

    def run(D, colsum, Ht, Ht_out, *, update_h, accumulate, want_loss, phase=-1, Hy_out=None,
            beta=0.0, D2=None, moved=None, skip_tol=0.0) -> PassResult:  # fmt: skip
        out = Ht if Ht_out is None else Ht_out
        return h_pass(chunk, D, colsum, Ht, 0, out, hp, update_h=update_h,
                      accumulate=accumulate, want_loss=want_loss, phase=phase, Hy_out=Hy_out,
                      beta=beta, D2=D2, moved=moved, skip_tol=skip_tol)  # fmt: skip

    run.fused = True
    run.active_set = True
    return run


def solve(data, G, W, Ht, hp: HParams, wp: WParams, **options) -> SolveResult:
    """:func:`iterate` on in-memory data (CompactCounts); see there for ``options``."""
    return iterate(memory_pass(data, hp), G, W, Ht, hp, wp, **options)


@with_one_blas_thread  # BLAS threads spinning between passes slow the passes (see _blas)
def iterate(
    run_pass: PassFn,
    G: np.ndarray | None,
    W: np.ndarray,
    Ht: np.ndarray,
    hp: HParams,
    wp: WParams,
    *,
    max_iter: int,
    tol: float,
    move_tol: tuple[float, float] | None = None,
    momentum: float = 0.0,
    loss_every: int = 10,
    update_W_: bool = True,
    callback: Callable | None = None,
    callback_every: int = 1,
    callback_owner=None,
    out_scale: float = 1.0,
    progress: bool = False,
    desc: str = "SmartNMF",
    losses: bool = True,
    timings: list | None = None,
    move_view: Callable | None = None,
) -> SolveResult:
    """Run the multiplicative updates; the pass over the data is ``run_pass``.

    The in-memory fit passes :func:`memory_pass`, the chunked driver its engine's pass over the
    chunks (:mod:`._chunked`): both run this one loop, so they give the same iterates.

    Parameters
    ----------
    run_pass : callable
        See :data:`PassFn`.
    G : None, 2-D or 3-D ndarray
    W : ndarray (rows × k), float64, feasible
    Ht : ndarray (pixels × k), working dtype, feasible
    hp, wp : HParams, WParams
    max_iter : int
    tol : float
        Stop when the relative decrease of F per iteration, measured between two loss
        evaluations, falls below ``tol``. 0 disables every stopping rule (``move_tol`` too):
        ``max_iter`` iterations are run.
    move_tol : (degrees, abundance) or None
        The movement rule: every :data:`MOVE_WINDOW` iterations the phase spectra D = G·W (as
        directions) and the abundance fractions are compared with those of the check before;
        stop when no spectrum's angle moved by more than ``move_tol[0]`` degrees and no
        abundance by more than ``move_tol[1]``. Either rule stops the fit. None (or a zero
        entry) leaves the relative-objective rule alone. F is evaluated at every check. With
        the rule on (``tol`` 0 included), the H step holds the pixels that stopped moving
        (:data:`ACTIVE_SET`).
    move_view : callable or None
        ``(W, Ht) -> (W', Ht')``: what the movement rule compares instead of the iterate (the
        fit's answer as it will be returned, e.g. with the minor phases moved to their bound,
        :func:`._fit.to_bound`); must not modify its arguments. ``Ht'`` None: the abundances
        are not watched (the caller refits them after the loop; two such checks in a row count
        their change as 0). None: the iterate itself.
    momentum : float
        Extrapolation of the updates (0: none): after each accepted iterate X⁺ (the update of
        X) the next pass starts from ``X⁺ + β (X⁺ − X)`` projected on the constraints, with β
        starting at ``momentum``, growing by :data:`MOMENTUM_GROWTH` per accepted step up to
        :data:`MOMENTUM_MAX` (1);
        F is checked where it is evaluated anyway (every ``loss_every`` iterations and at the
        movement rule's checks): when it is above the F of the last evaluation, the fit goes
        back to the plain update of the iterate evaluated then (every update from there
        decreases F), β halves and the pass is redone. So every F recorded is at most the one
        before (within one G), as without extrapolation; the iterations between evaluations
        are not checked one by one, and those undone stay counted (``restarts`` of the result
        counts the returns). The callback sees the plain update X⁺; when it replaces G the fit
        goes on from X⁺; so does the result of an interrupt or of ``max_iter``. When the
        callback replaces G,
        the iterate reached is checked against the last F of the old G first (which also closes
        the old G's convergence test): by the next pass, which evaluates F at that iterate for
        both G's (:data:`FOLD_CLOSING_LOSS`; the pass is discarded when the check goes back or
        stops the fit), or by a loss pass of its own (a pass that does not take ``D2``). The
        iterate returned is one whose F was checked.
    loss_every : int
        Evaluate F every ``loss_every`` iterations (it costs one logarithm per nonzero count).
    update_W_ : bool
        Update W (False: W held, H only — ``transform``, the H-only start and
        ``spectra_from="blocks"``).
    callback : callable or None
        ``callback(callback_owner, iteration, W * out_scale, H)`` every ``callback_every``
        iterations; a returned array replaces G (same kind: 2-D or 3-D). F is not comparable
        across a change of G, so the convergence test runs within each "epoch" of one G: F is
        evaluated right after a change and once more (one extra loss pass) just before the
        next change, and the fit stops when the epoch's relative decrease per iteration is
        below ``tol`` (then the last G that was fitted is kept). With W held, W is re-expressed
        on the new G so the spectra stay (:func:`hold_spectra`).
    out_scale : float
        Factor from internal W to the W passed to the callback.
    progress : bool
        Show a tqdm progress bar (``desc`` is its label).
    losses : bool
        False never evaluates F (the H-only start: F does not change the iterates).
    timings : list or None
        Receives the seconds of every iteration.

    Returns
    -------
    SolveResult
        ``stop_reason`` is ``"converged"``, ``"max_iter"`` or ``"interrupted"`` (KeyboardInterrupt:
        the last complete iterate is kept).
    """
    W = np.array(W, dtype=np.float64)
    Ht = np.ascontiguousarray(Ht)
    Ht_new = np.empty_like(Ht)
    Gt1 = g_colsums(G, W.shape[0], W.shape[1])
    loss_every = max(1, int(loss_every))
    hist: list[float] = []
    hist_it: list[int] = []
    ref: tuple[int, float] | None = None  # (iteration, F) of the last evaluation with this G
    force_loss = False
    stop = "max_iter"
    it = 0
    watch = tol > 0 and move_tol is not None and min(move_tol) > 0
    moved: list[tuple[int, float, float, float]] = []
    mom = losses and momentum > 0
    beta = float(momentum)
    F_acc = np.inf  # F of the last accepted iterate (of the current G)
    # the plain update of the last pass (behind an extrapolation), and that of the last iterate
    # whose F was evaluated and kept: where a rejected extrapolation goes back to
    plain: tuple[np.ndarray, np.ndarray] | None = None
    safe: tuple[np.ndarray, np.ndarray] | None = None
    accepted = False
    restarts = 0
    snap: tuple[np.ndarray, np.ndarray, bool] | None = None
    fused = getattr(run_pass, "fused", False)
    # H extrapolated by the pass itself (FUSED_EXTRAPOLATION)
    fuse = mom and fused and FUSED_EXTRAPOLATION and hp.simplex and hp.fixed_Ht is None
    fold = fused and FOLD_CLOSING_LOSS
    # the active set of the H step (ACTIVE_SET): each pixel's last move; none held at first
    # (only where W moves, and not with red-black sweeps: with W held at low dose the movement
    # rule needed up to 1.8 times the iterations, docs/validation.rst)
    red_black = hp.colour is not None and hp.lam > 0
    active = (getattr(run_pass, "active_set", False) and ACTIVE_SET and hp.simplex
              and hp.fixed_Ht is None and move_tol is not None and min(move_tol) > 0
              and update_W_ and not red_black)  # fmt: skip
    hold_below = ACTIVE_SHARE * move_tol[1] / MOVE_WINDOW if active else 0.0
    moves_px = np.full(Ht.shape[0], np.inf) if active else None
    # an epoch whose closing F (at the old G) rides on the next pass (FOLD_CLOSING_LOSS):
    # (old G, W at the change, F and iteration of its last evaluation, F_acc, safe, closing)
    pending: tuple | None = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=desc, leave=False)

    def loss_of(G_, W_, Ht_) -> float:
        D_ = compute_D(G_, W_, Ht_.dtype)
        r = run_pass(D_, colsums(D_), Ht_, None,
                     update_h=False, accumulate=False, want_loss=True)  # fmt: skip
        return assemble(r.loss, hp.total_scaled)

    try:
        t0 = time.perf_counter()
        while it < max_iter:
            check = tol > 0 and losses and it % MOVE_WINDOW == 0  # recorded with either rule
            want = losses and (it % loss_every == 0 or force_loss or (check and watch))
            force_loss = False
            D = compute_D(G, W, Ht.dtype)
            colsum = colsums(D)
            Hy = np.empty_like(Ht) if fuse else None
            D2 = None if pending is None else compute_D(pending[0], pending[1], Ht.dtype)
            skip = None
            if active:
                skip = 0.0 if want or it % ACTIVE_FULL_EVERY == 0 else hold_below
            res = sweep(run_pass, hp, D, colsum, Ht, Ht_new, update_h=True,
                        accumulate=update_W_, want_loss=want, Hy_out=Hy,
                        beta=beta if fuse else None, D2=D2, moved=moves_px,
                        skip_tol=skip)  # fmt: skip
            if pending is not None:
                # the end of the old G's epoch, as in the callback below (FOLD_CLOSING_LOSS)
                G_old, W_old, ref_old, F_acc_old, safe_old, closing = pending
                pending = None
                F_old = assemble(res.loss2, hp.total_scaled)
                if safe_old is not None and not F_old <= F_acc_old:
                    # back to the last iterate kept, under the new G; the pass is redone
                    W, Ht = _kept_under(safe_old, G_old, G, update_W_, wp)
                    beta *= 0.5
                    restarts += 1
                    force_loss = True
                    continue
                if closing:
                    if _relative_decrease(ref_old, F_old, it) < tol:
                        # converged with the old G: its iterate, as if the pass had not run
                        G, W = G_old, W_old
                        hist.append(F_old)
                        hist_it.append(it)
                        stop = "converged"
                        break
            F = assemble(res.loss, hp.total_scaled) if want else np.nan
            if want and safe is not None and not F <= F_acc:
                # the extrapolations since the last evaluation raised F: go back to the plain
                # update of the last iterate kept, with a smaller step (the iterations since
                # stay counted; the pass is redone at this iteration)
                (W, Ht), safe, plain = safe, None, None
                beta *= 0.5
                restarts += 1
                continue
            accepted = True
            if want:
                F_acc = F
            if accepted and want:
                hist.append(F)
                hist_it.append(it)
                if bar is not None:
                    bar.set_postfix(loss=f"{F:.6g}", refresh=False)
                if ref is not None and tol > 0 and it > ref[0]:
                    if _relative_decrease(ref, F, it) < tol:
                        stop = "converged"
                        break
                ref = (it, F)
            if accepted and check:
                Wv, Hv = (W, Ht) if move_view is None else move_view(W, Ht)
                now = (unit_spectra(G, Wv), fractions(Ht if Hv is None else Hv), Hv is None)
                if snap is not None:
                    angle, da, da_max = moves(snap, now)
                    moved.append((it, angle, da, da_max))
                    if watch and angle <= move_tol[0] and da <= move_tol[1]:
                        stop = "converged"
                        break
                snap = now
            if accepted:
                hsum = res.hsum
                if update_W_ and hp.sparsity_on == "counts":
                    # the prior on the counts: its tangent at this W (r from this D) joins H 1
                    # in the denominator (see _prior)
                    hsum = hsum + w_tangent(Ht_new, hp.mu, hp.eps_reg, colsum, hp.mean_counts)
                smooth = None
                if update_W_ and hp.model is not None and hp.lam > 0:
                    # the smoothing of the model's counts: its W-step terms at this W, with
                    # the new H (._model_smoothing)
                    S = gram(Ht_new, hp.adj_indptr, hp.adj_indices)
                    smooth = _model_smoothing.w_terms(hp.model, hp.lam, G, W, S)
                W_new = update_W(W, G, res.RHt, hsum, Gt1=Gt1, smooth=smooth, **wp.kwargs()) \
                    if update_W_ else W  # fmt: skip
                if mom:
                    # extrapolate along the last step; the next evaluation of F checks it
                    if want:
                        safe = (W_new, Ht_new.copy())
                    if fuse:  # H extrapolated by the pass
                        Wy = extrapolate_W(W, W_new, beta, wp)
                    else:
                        Wy, Hy = extrapolate(W, W_new, Ht, Ht_new, beta, hp, wp)
                    plain = (W_new, Ht_new)
                    Ht_new, Ht, W = Ht, Hy, Wy
                    beta = min(MOMENTUM_MAX, beta * MOMENTUM_GROWTH)
                else:
                    Ht, Ht_new, W = Ht_new, Ht, W_new
            accepted = False
            it += 1
            if timings is not None:
                timings.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            if bar is not None:
                bar.update(1)
            if callback is not None and it % max(1, int(callback_every)) == 0:
                Wc, Hc = (W, Ht) if plain is None else plain  # the plain update, not a guess
                ret = callback(callback_owner, it, Wc * out_scale, Hc.T)
                if ret is not None:
                    if plain is not None:  # a new G starts from the plain update
                        (W, Ht), plain = plain, None
                    G_new = np.asarray(ret, dtype=np.float64)
                    if G is None or G_new.shape != G.shape:
                        raise ValueError(
                            f"the callback returned G of shape {G_new.shape}, expected "
                            f"{None if G is None else G.shape}"
                        )
                    # the end of the epoch of the old G: one loss pass checks the
                    # extrapolations since the last evaluation (when F rose, the fit goes back
                    # to the last iterate kept, as within an epoch) and closes the epoch's
                    # convergence test; then a new epoch starts: F is not comparable across G
                    closing = ref is not None and tol > 0 and it > ref[0]
                    if fold and (closing or safe is not None):
                        # checked by the next pass (at this iterate, with the old G as D2)
                        pending = (G, W, ref, F_acc, safe, closing)
                    elif closing or safe is not None:
                        F_old = loss_of(G, W, Ht)
                        if safe is not None and not F_old <= F_acc:
                            (W, Ht), closing = safe, False
                            beta *= 0.5
                            restarts += 1
                        if closing and _relative_decrease(ref, F_old, it) < tol:
                            stop = "converged"
                            break
                    safe = None
                    if not update_W_:
                        W = hold_spectra(G, G_new, W, wp)
                    G = G_new
                    Gt1 = g_colsums(G, W.shape[0], W.shape[1])
                    ref = None
                    F_acc = np.inf
                    force_loss = True
    except KeyboardInterrupt:
        stop = "interrupted"
        if plain is not None:  # the last plain update, not the guess the next pass started from
            (W, Ht), plain = plain, None
    finally:
        if bar is not None:
            bar.close()
    if stop == "max_iter" and plain is not None:
        (W, Ht), plain = plain, None  # as after an interrupt: the last plain update
    if losses and (not hist_it or hist_it[-1] != it):
        try:
            if pending is not None:
                # the fit ended before the pass that checks the old G's epoch: check it here,
                # as the callback does without FOLD_CLOSING_LOSS
                G_old, W_old, _, F_acc_old, safe_old, _ = pending
                pending = None
                if safe_old is not None and not loss_of(G_old, W_old, Ht) <= F_acc_old:
                    W, Ht = _kept_under(safe_old, G_old, G, update_W_, wp)
                    restarts += 1
            F = loss_of(G, W, Ht)
            if safe is not None and not F <= F_acc:
                # extrapolated since the last evaluation and F rose: keep the last safe iterate
                W, Ht = safe
                F = loss_of(G, W, Ht)
            hist.append(F)
            hist_it.append(it)
        except KeyboardInterrupt:
            stop = "interrupted"
            if safe is not None:
                W, Ht = safe
    return SolveResult(W, Ht, G, it, hist, hist_it, stop, move_history=moved,
                       restarts=restarts)  # fmt: skip


def _relative_decrease(ref: tuple[int, float], F: float, it: int) -> float:
    """Relative decrease of F per iteration since ``ref = (iteration, F)`` (the ``tol`` rule)."""
    return (ref[1] - F) / max(abs(F), 1e-300) / (it - ref[0])


def _kept_under(safe: tuple, G_old, G, update_W_: bool, wp: WParams) -> tuple:
    """The last iterate kept, ``safe = (W, Ht)`` of the old G's epoch, under the new G: W
    re-expressed for G when the spectra are held (:func:`hold_spectra`)."""
    W, Ht = safe
    return (W if update_W_ else hold_spectra(G_old, G, W, wp)), Ht


def extrapolate_W(W: np.ndarray, W_new: np.ndarray, beta: float, wp: WParams) -> np.ndarray:
    """``W⁺ + β (W⁺ − W)`` projected on the constraints of W (a new array)."""
    Wy = W_new + beta * (W_new - W)
    feasible_W(Wy, wp)
    return Wy


def extrapolate(
    W: np.ndarray,
    W_new: np.ndarray,
    Ht: np.ndarray,
    Ht_new: np.ndarray,
    beta: float,
    hp: HParams,
    wp: WParams,
) -> tuple[np.ndarray, np.ndarray]:
    """``X⁺ + β (X⁺ − X)`` for W and H, projected on their constraints (new arrays)."""
    Wy = extrapolate_W(W, W_new, beta, wp)
    if hp.simplex and hp.fixed_Ht is None and Ht.flags.c_contiguous and Ht_new.flags.c_contiguous:
        # the common case in one compiled pass (the NumPy steps below cost as much as a pass
        # over the counts on a large map at low dose)
        Hy = np.empty(Ht.shape, dtype=np.float64)
        if Ht.shape[0] < EXTRAPOLATE_SERIAL_ROWS:
            _kernels.extrapolate_simplex_serial(Ht_new, Ht, float(beta), float(hp.eps), Hy)
        else:
            _kernels.extrapolate_simplex(Ht_new, Ht, float(beta), float(hp.eps),
                                         n_blocks(Ht.shape[0]), Hy)  # fmt: skip
    else:
        Hy = Ht_new.astype(np.float64) + beta * (Ht_new - Ht.astype(np.float64))
        feasible_H(Hy, hp.simplex, hp.fixed_Ht, hp.eps)
    return Wy, np.ascontiguousarray(Hy, dtype=Ht.dtype)


def unit_spectra(G: np.ndarray | None, W: np.ndarray) -> np.ndarray:
    """The phase spectra D = G·W (channels × k, float64), each column scaled to unit norm."""
    D = compute_D(G, W, np.float64)
    return D / np.maximum(np.linalg.norm(D, axis=0), 1e-300)


def fractions(Ht: np.ndarray) -> np.ndarray:
    """Abundance fractions (pixels × k, float64): H with every pixel scaled to sum to 1 (H itself
    under the H simplex; the fractions the maps are read in otherwise)."""
    A = np.asarray(Ht, dtype=np.float64)
    return A / np.maximum(A.sum(axis=1, keepdims=True), 1e-300)


def moves(before: tuple, after: tuple) -> tuple[float, float, float]:
    """Largest change of a spectrum's angle (degrees), root-mean-square and largest change of
    the abundance fractions between two ``(unit_spectra, fractions, unwatched)``; when both
    say ``unwatched`` (the abundances are refitted after the loop) their changes count as 0."""
    cos = np.clip(np.einsum("nk,nk->k", before[0], after[0]), -1.0, 1.0)
    angle = float(np.degrees(np.arccos(cos)).max())
    if before[2] and after[2]:
        return angle, 0.0, 0.0
    d = after[1] - before[1]
    return angle, float(np.sqrt(np.mean(d * d))), float(np.abs(d).max())


def hold_spectra(G_old: np.ndarray, G_new: np.ndarray, W: np.ndarray, wp: WParams) -> np.ndarray:
    """W for ``G_new`` that keeps the phase spectra ``G·W`` of ``G_old`` (W held, G replaced).

    When W is held (``spectra_from="blocks"``) and the callback replaces G (absorption refreshed
    from the composition), the measured spectra stay and their interpretation changes: each
    entry ``W[c, j]`` is divided by the least-squares factor ``f`` with ``G_new[:, c] ≈ f ·
    G_old[:, c]`` (phase j's G for a 3-D G): absorption scales a line family's column, so this
    is exact for a pure scaling. Fixed entries are kept; the result is projected on the
    constraints.
    """
    Wn = np.array(W, dtype=np.float64)
    k = W.shape[1]
    for j in range(k):
        Go = G_old if G_old.ndim == 2 else G_old[j]
        Gn = G_new if G_new.ndim == 2 else G_new[j]
        den = np.einsum("nc,nc->c", Go, Go)
        f = np.einsum("nc,nc->c", Gn, Go) / np.where(den > 0, den, 1.0)
        ok = (den > 0) & (f > 0)
        Wn[ok, j] = W[ok, j] / f[ok]
    if wp.fixed is not None:
        fixed = ~np.isnan(wp.fixed)
        Wn[fixed] = wp.fixed[fixed]
    feasible_W(Wn, wp)
    return Wn


def _rescale_columns(X: np.ndarray, free: np.ndarray, eps: float) -> np.ndarray:
    """Scale the free entries of each column of X so the column sums to 1, none below ``eps``.

    Entries that would fall below ``eps`` are set to ``eps`` and the others rescaled again until
    no entry moves (at most ``X.shape[0]`` rounds). Columns whose free entries are all zero are
    spread evenly.
    """
    X = X.astype(np.float64)
    fixed_sum = np.where(free, 0.0, X).sum(axis=0)
    target = 1.0 - fixed_sum
    nfree = free.sum(axis=0)
    zero = (np.where(free, X, 0.0).sum(axis=0) <= 0) & (nfree > 0)
    X[:, zero] = np.where(free[:, zero], 1.0, X[:, zero])
    floored = np.zeros(X.shape, dtype=bool)
    for _ in range(X.shape[0] + 1):
        movable = free & ~floored
        msum = np.where(movable, X, 0.0).sum(axis=0)
        rest = target - eps * (free & floored).sum(axis=0)
        fac = np.where(msum > 0, rest / np.maximum(msum, 1e-300), 1.0)
        X = np.where(movable, X * fac[None, :], X)
        new_floor = movable & (X < eps)
        if not new_floor.any():
            break
        floored |= new_floor
        X[new_floor] = eps
    return X


def feasible_H(Ht: np.ndarray, simplex: bool, fixed_Ht: np.ndarray | None, eps: float) -> None:
    """Project a starting H (pixels × k) in place onto the constraint set."""
    np.maximum(Ht, eps, out=Ht)
    free = np.ones(Ht.shape, dtype=bool) if fixed_Ht is None else np.isnan(fixed_Ht)
    if fixed_Ht is not None:
        Ht[~free] = fixed_Ht[~free]
    if simplex:
        Ht[:] = _rescale_columns(Ht.T, free.T, eps).T


def feasible_W(W: np.ndarray, wp: WParams) -> None:
    """Project a starting W (rows × k) in place onto the constraint set."""
    np.maximum(W, wp.eps, out=W)
    free = np.ones(W.shape, dtype=bool) if wp.fixed is None else np.isnan(wp.fixed)
    if wp.fixed is not None:
        W[~free] = wp.fixed[~free]
    rows = np.asarray(wp.simplex_rows, dtype=bool)
    if wp.simplex and rows.any():
        W[rows] = _rescale_columns(W[rows], free[rows], wp.eps)

"""The one fit path: start → H-only warm-up → multiplicative updates, over a data source.

A *data source* is what a fit reads the counts through. It offers:

``stats``
    A :class:`._data.CompactCounts` with at least ``n_pixels``, ``n_channels``, ``total`` and
    ``pixel_sums`` (the counts themselves need not be there).
``start_counts(plan)``
    Counts for the ``"auto"`` start: all of them in memory; for a chunked fit a stand-in that
    holds the binned counts (see :mod:`._chunked`).
``bind(hp)``
    The pass over the data (:data:`._solver.PassFn`) for the H-step parameters ``hp``.
``desc``, ``close()``
    Label of the progress bar; release what the source holds.

:class:`InMemory` is the source of an in-memory fit; :class:`._chunked.ChunkedSource` runs the
same passes chunk by chunk over a dask array, locally or on a ``dask.distributed`` cluster. Both
go through :func:`run`, so they give the same iterates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from esmpy_hs.nmf import _init, _plan
from esmpy_hs.nmf._blocksum import block_sums
from esmpy_hs.nmf._coarse import coarse_start, joint_level
from esmpy_hs.nmf._data import CompactCounts
from esmpy_hs.nmf._init import (
    BOUND_ABUNDANCE,
    anchor_move,
    auto_init,
    extrapolate_minor_phases,
    random_init,
)
from esmpy_hs.nmf._plan import COLLAPSE_SHARE, Plan, coarse_levels, joint_factor
from esmpy_hs.nmf._solver import PassFn, SolveResult, feasible_H, feasible_W, iterate, memory_pass

#: a phase whose abundance is ≥ 0.9 in at least this share of the pixels where it is present
#: (≥ 0.1) is seen pure and is not moved to its bound (measured after the fit: 0.95 for pure
#: layers, 0.3–0.6 for particles thinner than the specimen)
PURE_SHARE = 0.75

#: when the fit ends with the move to the composition bound and a refit of H, the movement rule
#: watches the phase spectra as that move will leave them (:func:`_bound_view`), not the raw
#: iterate's spectra and abundances: the fit stops when the spectra it returns stop moving.
#: False: the raw iterate, as before (docs/validation.rst, "The movement rule at the bound")
MOVE_AT_BOUND = True

#: H-only iterations after the ``"auto"`` start, before W moves (the start's abundances come
#: from binned blocks; a few H steps at full resolution fit them to the pixels first)
WARMUP_ITER = 10


class InMemory:
    """Data source of an in-memory fit: the compact counts of the whole map."""

    def __init__(self, data: CompactCounts, desc: str = "SmartNMF") -> None:
        self.stats = data
        self.desc = desc

    def start_counts(self, plan: Plan) -> CompactCounts:
        return self.stats

    def bind(self, hp) -> PassFn:
        return memory_pass(self.stats, hp)

    def binned(self, block: np.ndarray) -> list:
        """Sums of the counts over blocks of pixels (``block``: one id ≥ 0 per pixel) as
        ``[(block ids, CSR of their sums)]`` (see :func:`._coarse.binned_counts`)."""
        return [block_sums(self.stats, block)]

    def close(self) -> None:
        pass


@dataclass
class Start:
    """A feasible start: W (internal units), H (pixels × k, working dtype) and the number of
    H-only iterations to run before W is updated."""

    W: np.ndarray
    Ht: np.ndarray
    warmup: int = 0


def initial(plan: Plan, source, init) -> Start:
    """The start of ``init``: ``"auto"``, ``"random"`` or ``(W, H)`` (units of ``W_``/``H_``)."""
    s = plan.settings
    k, m, scale, wp = s.k, s.m, plan.scale, plan.wp
    simplex_H = s.simplex == "H"
    if isinstance(init, dict):
        init = (init.get("W"), init.get("H"))
    if isinstance(init, tuple | list):
        W0 = np.array(init[0], dtype=np.float64)
        H0 = np.array(init[1], dtype=np.float64)
        p = source.stats.n_pixels
        if W0.shape != (m, k) or H0.shape != (k, p):
            raise ValueError(
                f"init (W, H) must have shapes ({m}, {k}) and ({k}, {p}), got {W0.shape} "
                f"and {H0.shape}"
            )
        if not (np.all(np.isfinite(W0)) and np.all(np.isfinite(H0))):
            raise ValueError("init (W, H) must be finite")
        start = Start(W0 / scale, np.ascontiguousarray(H0.T))
    elif init == "random":
        rng = np.random.default_rng(s.random_state)
        W0, Ht0 = random_init(source.stats, s.G, k, scale=scale, rows=m, simplex_H=simplex_H,
                              wp=wp, dtype=np.float64, rng=rng)  # fmt: skip
        start = Start(W0, Ht0)
    else:
        W0, Ht0 = auto_init(source.start_counts(plan), s.G, k, scale=scale, shape=s.shape,
                            simplex_H=simplex_H, wp=wp, dtype=np.float64,
                            n_refine=s.init_iter, extrapolation=plan.extrapolation,
                            mu=s.mu if plan.hold_W else None, eps_reg=s.eps_reg,
                            sparsity_on=s.sparsity_on,
                            anchor_extrapolation=anchor_move(
                                plan.extrapolation, s.init_extrapolation is not None,
                                plan.hold_W, _moves_to_bound(plan),
                            ),
                            hold_far=_held_back(plan))  # fmt: skip
        start = Start(W0, Ht0, WARMUP_ITER)
    feasible_W(start.W, wp)
    feasible_H(start.Ht, simplex_H, s.fixed_Ht, s.eps)
    start.Ht = np.ascontiguousarray(start.Ht, dtype=s.dtype)
    return start


def run(
    plan: Plan,
    source,
    start: Start,
    *,
    update_W: bool = True,
    callback: Callable | None = None,
    callback_every: int = 1,
    owner=None,
    progress: bool = False,
    timings: list | None = None,
) -> SolveResult:
    """Fit from ``start``: the H-only warm-up, the updates until ``tol`` or ``max_iter``, then
    the minor phases moved to their composition bound (:func:`to_bound`) and H refitted.

    Before the warm-up, the ``"auto"`` start goes through binned levels where the plan says
    so: the coarse-to-fine fit of H at low dose (W held, :func:`._plan.coarse_levels`), or on
    a large map the joint fit on the map binned b × b (:func:`._plan.joint_factor`), whose W
    and interpolated H the full-resolution iterations start from.

    ``update_W=False`` holds W (``transform``; the spectra of the binned start,
    ``plan.hold_W``, are held by the caller passing ``update_W=not plan.hold_W``); the move to
    the bound follows only a fit that updated W. An interrupt ends the fit where it happens
    (``stop_reason="interrupted"``, the last complete iterate). After a move to the bound the
    result's ``shift`` (k,) is the move of each phase, ``final_iter`` and ``final_loss`` the
    iterations and F of the refit of H; ``n_iter`` and the loss history are the main loop's.
    """
    s = plan.settings
    G = s.G
    run_pass = source.bind(plan.hp)
    Ht = start.Ht
    W = start.W
    factors = coarse_levels(plan) if start.warmup > 0 and not update_W else []
    coarse: list[tuple[int, int]] = []
    b = joint_factor(plan) if start.warmup > 0 and update_W else 0
    if b:
        # a large map: W and H fitted on the map binned b × b first (see _coarse.joint_level)
        W, Hf, n_coarse, stopped = joint_level(
            plan, source, W, Ht, b, _bound_view(plan) if MOVE_AT_BOUND else None,
            start.warmup, _plan.RED_BLACK_LAMBDA, progress=progress, desc=source.desc,
        )  # fmt: skip
        coarse = [(b, n_coarse)]
        Ht = np.ascontiguousarray(Hf, dtype=s.dtype)
        feasible_H(Ht, True, None, s.eps)
        if stopped:
            return SolveResult(W, Ht, G, 0, stop_reason="interrupted", coarse=coarse)
    if factors:
        # the "auto" start's abundances, W held: fitted on binned maps from coarse to fine
        # instead of the warm-up (see _coarse)
        Ht, coarse, stopped = coarse_start(plan, source, start.W, Ht, factors,
                                             _plan.RED_BLACK_LAMBDA)  # fmt: skip
        if stopped:
            return SolveResult(start.W, Ht, G, 0, stop_reason="interrupted", coarse=coarse)
    elif start.warmup > 0:
        r0 = iterate(run_pass, G, W, Ht, plan.hp, plan.wp, max_iter=start.warmup,
                     tol=0.0, update_W_=False, losses=False)  # fmt: skip
        if r0.stop_reason == "interrupted":
            return replace(r0, n_iter=0)
        Ht = r0.Ht
    # the movement rule watches the answer as it will be returned: with the minor phases at
    # their bound, so a drift along the line the final move covers does not hold the fit
    view = _bound_view(plan) if update_W and MOVE_AT_BOUND else None
    res = iterate(
        run_pass, G, W, Ht, plan.hp, plan.wp, max_iter=s.max_iter, tol=s.tol,
        move_tol=plan.move_tol, momentum=s.momentum, update_W_=update_W,
        loss_every=s.loss_every, callback=callback, callback_every=callback_every,
        callback_owner=owner, out_scale=plan.scale, progress=progress,
        desc=source.desc, timings=timings, move_view=view,
    )  # fmt: skip
    res = replace(res, coarse=coarse)
    if res.stop_reason == "interrupted" or not (update_W or (start.warmup > 0
                                                            and _held_back(plan))):
        return res
    moved = to_bound(plan, res)
    if moved is None and not (view is not None and view.unwatched):
        return res
    # the spectra held at the bound, the abundances refitted: the result is this fit's last
    # iterate, with the main loop's history (F jumps at the move, the updates stay monotone);
    # a loop whose last check watched only the spectra has its abundances refitted even when
    # nothing moves at the end
    W, Ht, shift = (res.W, res.Ht, None) if moved is None else moved
    fin = iterate(run_pass, res.G, W, Ht, plan.hp, plan.wp, max_iter=s.max_iter,
                  update_W_=False, tol=s.tol, move_tol=plan.move_tol, momentum=s.momentum,
                  loss_every=s.loss_every, progress=progress,
                  desc=f"{source.desc}, abundances at the bound")  # fmt: skip
    stop = "interrupted" if fin.stop_reason == "interrupted" else res.stop_reason
    return replace(res, W=fin.W, Ht=fin.Ht, stop_reason=stop, shift=shift,
                   final_iter=fin.n_iter, final_loss=fin.loss_history[-1])  # fmt: skip


def _held_back(plan: Plan) -> bool:
    """Whether a fit with W held (the low-dose blocks mode) ends with the move to the bound: the
    ``"auto"`` start holds back the phases whose bound lies beyond the far limit in the binned
    blocks (:data:`._init.START_BOUND_LIMIT`), and the pixels' abundances decide for them as
    after a full-resolution fit. The phases the start moved already lack an element and stay."""
    return _init.START_BOUND_LIMIT and plan.hold_W and _moves_to_bound(plan)


def to_bound(plan: Plan, res: SolveResult) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The fitted W and H with every minor phase moved ``final_extrapolation`` of the way to
    its composition bound, away from the dominant phase (largest total abundance).

    A mixture of phase j with the dominant phase d has the same likelihood as phase j moved
    along W_j + β (W_j − W_d) with its abundance moved to d (see
    :func:`._init.extrapolate_minor_phases`); β is bounded by the first element of W_j to
    reach 0. Applies to the H simplex with a physics G and k ≥ 2; a phase seen pure
    (:data:`PURE_SHARE`) or whose bound is implausibly far or near (:data:`BOUND_ABUNDANCE`)
    stays. Returns None when no phase moves (each lacks one of the dominant phase's elements
    already, or stays), else ``(W, Ht, β)``.
    """
    s = plan.settings
    if not _moves_to_bound(plan):
        return None
    moved = _bound_move(plan, res.W, res.Ht)
    if moved is None:
        return None
    W, Ht, beta = moved
    feasible_H(Ht, True, s.fixed_Ht, s.eps)
    return W, np.ascontiguousarray(Ht, dtype=s.dtype), beta


def _moves_to_bound(plan: Plan) -> bool:
    """Whether a fit of this plan ends with the move to the composition bound."""
    s = plan.settings
    return s.final_extrapolation > 0 and s.G is not None and s.k >= 2 and s.simplex == "H"


class _BoundView:
    """The movement rule's view of an iterate (see :func:`run`): when a minor phase would
    move, W with the phases moved as :func:`to_bound` would move them and no abundances (None:
    :func:`run` refits them with the spectra held after the loop, so their drift in the loop is
    not what is returned; ``unwatched`` says so); otherwise the iterate itself."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.unwatched = False

    def __call__(self, W: np.ndarray, Ht: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        moved = _bound_move(self.plan, W, Ht, abundances=False)
        self.unwatched = moved is not None
        return (W, Ht) if moved is None else (moved[0], None)


def _bound_view(plan: Plan) -> _BoundView | None:
    """A :class:`_BoundView` when the fit ends with the move to the bound and the movement
    rule is on, else None."""
    if not _moves_to_bound(plan) or plan.move_tol is None or plan.settings.tol <= 0:
        return None
    return _BoundView(plan)


def _bound_move(plan: Plan, W: np.ndarray, Ht: np.ndarray, abundances: bool = True):
    """``(W, Ht, β)`` of :func:`to_bound` before H's feasibility fix (new arrays), or None
    when no phase moves. ``abundances=False`` (the movement rule's view, which reads only W):
    the moved abundances are not computed (``Ht`` of the result is then one row)."""
    s = plan.settings
    gamma = s.final_extrapolation
    Ht = np.asarray(Ht, dtype=np.float64)
    dominant = int(np.argmax(Ht.sum(axis=0)))
    lo, hi = BOUND_ABUNDANCE
    # a flat-topped abundance (pure over most of where the phase is) is a phase seen pure, not
    # the peaked abundance of a phase thinner than the specimen: it stays
    purity = (Ht >= 0.9).sum(axis=0) / np.maximum((Ht >= 0.1).sum(axis=0), 1)
    W, Ht, beta = extrapolate_minor_phases(W, Ht if abundances else Ht[:1], plan.wp, dominant,
                                           gamma,
                                           bounds=(1.0 / hi - 1.0, 1.0 / lo - 1.0),
                                           movable=purity < PURE_SHARE)  # fmt: skip
    if not np.any(beta > 0):
        return None
    return W, Ht, beta


def collapsed_phases(Ht: np.ndarray, spectra_sums: np.ndarray, simplex_H: bool) -> list[int]:
    """Phases whose share is below :data:`COLLAPSE_SHARE`: of the abundance under the H simplex
    (a phase that fills almost no volume, whatever its spectrum), of the modelled counts
    otherwise (``spectra_sums``: each phase spectrum's sum)."""
    counts = np.asarray(Ht, dtype=np.float64).sum(axis=0)
    if not simplex_H:
        counts = counts * spectra_sums
    total = counts.sum()
    if not total > 0:
        return []
    return [int(j) for j in np.flatnonzero(counts / total < COLLAPSE_SHARE)]


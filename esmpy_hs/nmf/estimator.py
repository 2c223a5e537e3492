"""``SmartNMF``: the scikit-learn-style estimator of the physics-guided Poisson NMF.

The estimator is thin. Its parameters are checked once, before any data are read
(:mod:`._plan`); one private :meth:`SmartNMF._fit_transform` opens a data source (the counts in
memory, or a dask array chunk by chunk, :mod:`._chunked`), resolves the plan from the data's
statistics and runs the one fit path (:mod:`._fit`). ``transform`` and ``score`` reuse the
plan of the fit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from esmpy_hs.nmf._data import CompactCounts, as_compact, is_dask_array, shape_of
from esmpy_hs.nmf._fit import InMemory, Start, collapsed_phases, initial, run
from esmpy_hs.nmf._laplacian import normalise_shape
from esmpy_hs.nmf._plan import (
    COLLAPSE_SHARE,
    DEFAULT_LAMBDA,
    LAMBDA_COUNTS,
    LOW_DOSE_COUNTS,
    PARAMETERS,
    Plan,
    for_new_pixels,
    resolve,
    settle,
    with_extrapolation,
)
from esmpy_hs.nmf._solver import evaluate_loss, feasible_H
from esmpy_hs.nmf._updates import compute_D

__all__ = [
    "COLLAPSE_SHARE",
    "DEFAULT_LAMBDA",
    "LAMBDA_COUNTS",
    "LOW_DOSE_COUNTS",
    "SmartNMF",
]

_PARAMS = tuple(PARAMETERS)


class SmartNMF:
    r"""Physics-guided Poisson NMF, Y ≈ G·W·H, by majorise-minimise multiplicative updates.

    Minimises, on data scaled so the mean pixel sums to k (see *Scaling* below),

    .. math::

        F(W, H) = D_{KL}(Y \| G W H) + \frac{\lambda}{2} \operatorname{tr}(H \Delta H^T)
                  + \sum_{kp} \mu_k \log(H_{kp} + \epsilon_{reg})

    with W ≥ 0, H ≥ 0 and an optional simplex constraint. Every update exactly minimises a
    majorising surrogate of F over the constraint set, so F never increases (while G is fixed).

    Parameters
    ----------
    G : ndarray or None
        Physics matrix: ``None`` (identity: plain KL-NMF, W is channels × k), 2-D
        (channels × m, shared by all phases) or 3-D (k × channels × m, one per phase:
        ``D[:, j] = G[j] @ W[:, j]``). Non-negative, finite.
    n_components : int
        Number of phases k.
    lambda_L : float or None, default None
        Laplacian (spatial smoothness) weight λ ≥ 0 on H. ``None`` chooses it from the dose
        when a pixel grid (``shape_2d``) is given: λ = max(:data:`DEFAULT_LAMBDA`,
        :data:`LAMBDA_COUNTS` / ``scale_``), so that the smoothing keeps the same weight against
        the counts at every dose; 0 without a grid. The value used is ``lambda_L_``. An explicit
        λ > 0 without a grid raises.
    mu : float or array of shape (k,), default 0.01
        Log-sparsity weight(s) μ ≥ 0.
    epsilon_reg : float, default 0.01
        ε_reg > 0 of the log prior (its slope at 0 is μ/ε_reg).

    simplex : {"H", "W", None}, default "H"
        ``"H"``: every pixel's abundances sum to 1. ``"W"``: the ``simplex_rows`` of every column
        of the *internal* W sum to 1 (atomic fractions; H carries the intensity). None: no
        constraint.
    simplex_rows : bool array of shape (m,) or None
        Rows of W in the W simplex (element rows); continuum / stray-line rows are excluded.
        Default: all rows.
    fixed_W : array (m × k) or None
        Fixed entries of W (NaN = free). Values are in the units of the W simplex (atomic
        fractions) when ``simplex="W"``; otherwise in the units of ``W_`` (counts). Under the W
        simplex the free simplex rows of a column share ``1 − Σ(fixed simplex rows)``, so the
        fixed simplex entries of a column must sum to at most 1 (exactly 1 if all are fixed).
    fixed_H : array (k × pixels) or None
        Fixed entries of H (NaN = free); under the H simplex the free entries of a pixel share
        ``1 − Σ(fixed)``. Ignored by :meth:`transform`.
    init : "auto", "random" or (W, H)
        ``"auto"``: deterministic physics-aware start (binned clustering, NNLS on G, short
        refinement on binned data; see :mod:`esmpy_hs.nmf._init`). ``"random"``: uniform,
        from ``random_state``. A tuple ``(W, H)`` or dict ``{"W": ..., "H": ...}`` in the units of
        ``W_`` / ``H_``; projected onto the constraints.
    max_iter : int, default 2000
    tol : float, default 1e-8
        Stop when the relative decrease of F per iteration (measured between evaluations of F,
        every ``loss_every`` iterations) falls below ``tol``. 0 runs ``max_iter`` iterations.
        F is dominated by the Poisson noise floor, so the relative decrease is small even while
        the spectra still move by degrees: keep ``tol`` small (docs/choosing.rst). ``tol=0``
        turns off every stopping rule, the movement rule below too.
    angle_tol : float, default 0.01
        The movement rule, on what a user reads (degrees): every 10 iterations the phase
        spectra ``components_`` and the abundance fractions are compared with those of 10
        iterations before, and the fit stops when no spectrum turned by more than
        ``angle_tol`` degrees and the abundances moved by at most ``abundance_tol`` (root mean
        square over pixels and phases). Either rule, this one or ``tol``'s, stops the fit.
        ``angle_tol=0`` or ``abundance_tol=0`` turns the movement rule off (the objective rule
        alone, as before it). The movements are kept in ``move_history_``. When the fit ends
        with the move of minor phases to their composition bound (``final_extrapolation``), the
        rule compares the spectra as that move will leave them, and, while a phase would move,
        not the abundances, which are refitted after the loop (their change is recorded as 0).
    abundance_tol : float, default 2.5e-4
        See ``angle_tol`` (abundance fraction, dimensionless).
    momentum : float in [0, 1], default 0.5
        Extrapolation of the multiplicative updates: each accepted iterate X⁺ (the update of X)
        is moved on to ``X⁺ + β (X⁺ − X)`` (projected on the constraints) before the next
        update, β starting at ``momentum`` and growing by 5 % per step up to 1. Where F is
        evaluated (every ``loss_every`` iterations and at the checks of the movement rule) it
        is compared with the F evaluated before: when it rose, the fit goes back to the plain
        update of the iterate evaluated then and β halves, so every F recorded is at most the
        one before (between changes of G by the callback), and the result is an iterate whose
        F was checked. 0 gives the plain updates. ``n_restarts_`` counts the returns (the
        iterations undone stay in ``n_iter_``).
    random_state : None, int or numpy Generator
        Used by ``init="random"`` only (``"auto"`` is deterministic).
    shape_2d : tuple or None
        Pixel grid ``(rows, cols)`` (pixel ``p = row * cols + col``) or ``(n,)`` for a chain.
        Needed for λ > 0.
    channels_first : bool, default False
        X is channels × pixels instead of pixels × channels.
    dtype : {"float64", "float32"}, default "float64"
        Working precision of H and D in the kernels (scalar arithmetic is float64).
    loss_every : int, default 10
        Evaluate F (one logarithm per nonzero count) every ``loss_every`` iterations.
    callback : callable or None
        ``callback(estimator, iteration, W, H)`` every ``callback_every`` iterations with W in
        the units of ``W_`` and H (k × pixels). If it returns an array, that array replaces G
        (same shape); the convergence test then restarts. Called in the full-resolution
        iterations only (not in the binned levels of ``coarse_iter_``).
    callback_every : int, default 1
    progress : bool, default True
        tqdm progress bar.
    eps : float, default 1e-10
        Lower bound of the free entries of W and H (keeps multiplicative updates alive).
    init_iter : int, default 100
        Refinement iterations on binned data in ``init="auto"`` (0: none).
    init_extrapolation : float in [0, 1] or None, default None
        With a physics G, ``init="auto"`` moves the minor phases away from the dominant one by
        this fraction of the way to the bound set by non-negative compositions, because
        particles thinner than the specimen are only seen mixed with the matrix (see
        :func:`esmpy_hs.nmf._init.extrapolate_minor_phases`). 0 starts from the extreme blocks
        as measured (right when every phase has pure pixels and no regularisation is used).
        None: 1 when the spectra are held from the blocks (``spectra_from_ == "blocks"``:
        nothing moves them after the start); when they are fitted at full resolution, 0.5 for
        the move of a minor cluster seen mainly between other phases than the dominant one (a
        film between two grains, before the start's refinement), and no move away from the
        dominant phase when ``final_extrapolation > 0`` (the move to the bound after the fit
        makes it, from the fitted spectra; 0.5 when ``final_extrapolation=0``). The value
        reported is ``init_extrapolation_``; ``esmpy_hs.nmf._init.DEFER_TO_FINAL`` and
        ``MIXED_MAINLY_OTHERS`` set to False restore the start of before (0.5 for both moves).
    final_extrapolation : float in [0, 1], default 1
        After a fit whose spectra were fitted at full resolution (``spectra_from_ ==
        "pixels"``, physics G, H simplex), each minor phase is moved this fraction of the way
        to its composition bound along the line from the dominant phase (the phase of largest
        total abundance), the abundances moved the other way so the model is unchanged, and the
        abundances refitted with the spectra held. The likelihood is flat along that line for
        a phase never seen pure, and the sparsity prior pulls such a phase back to its most
        mixed pixels; the bound is the most distinct composition the counts allow. A phase
        that lacks one of the dominant phase's elements is at its bound already and does not
        move, and so does a phase whose bound would put its largest abundance outside
        :data:`~esmpy_hs.nmf._init.BOUND_ABUNDANCE` (25–80 %) of the fitted one. With the
        spectra from the blocks (``spectra_from_ == "blocks"``) the same move is made, after
        the pixels' abundances are fitted, for a phase the start held back because its bound
        lay that far from its blocks (:data:`~esmpy_hs.nmf._init.START_BOUND_LIMIT`). 0 keeps
        the fitted spectra. The shift of each phase is ``final_shift_``.
    spectra_from : {"auto", "pixels", "blocks"}, default "auto"
        Where W (the phase spectra) is estimated. ``"pixels"``: W and H are fitted together on
        the full-resolution data. ``"blocks"``: W is the one of the ``init="auto"`` start,
        fitted on b × b binned blocks (about 3000 counts each), and held; the full-resolution
        fit updates H only. ``"auto"``: ``"blocks"`` when the mean pixel holds fewer than
        :data:`LOW_DOSE_COUNTS` counts and the start bins (``init="auto"`` with a grid),
        ``"pixels"`` otherwise. At low dose every pixel's abundances are free parameters fitted
        to a handful of counts, and the joint fit bends the spectra to follow that noise;
        binned blocks hold enough counts per free abundance to pin the spectra, and the linear
        model is unchanged by binning. The mode used is ``spectra_from_``.
    sparsity_on : {"share", "counts"}, default "share"
        What the log-sparsity prior acts on. ``"share"``: each pixel's abundance share,
        ``Σ μ log(h + ε_reg)``. ``"counts"``: each phase's counts in the pixel relative to the
        mean pixel's, ``Σ μ log(r_j h + ε_reg)`` with ``r_j`` (dimensionless) the counts of a
        pure pixel of phase j over the map's mean pixel counts; unlike the share form it gains
        nothing when a phase trades its share against the scale of its spectrum (see
        docs/choosing.rst and docs/validation.rst).
    smoothing : {"shares", "model"}, default "shares"
        What the smoothing prior (weight λ) compares between neighbouring pixels.
        ``"shares"``: the abundance shares, ``(λ/2) Σ_edges ‖h_p − h_q‖²`` (the Laplacian).
        ``"model"``: the expected counts, ``(λ/2) Σ_edges (h_p − h_q)ᵀ M (h_p − h_q)`` with
        ``M = Dᵀ Λ D / c`` (D the phase spectra, Λ the inverse mean spectrum of the map, c
        fixed at the start so that the prior there equals the Laplacian's value); the same for
        every remixing of the phases that the counts cannot see, so it does not push the
        spectra outwards on maps where no pixel is pure (:mod:`esmpy_hs.nmf._model_smoothing`,
        docs/choosing.rst). In-memory fits only, not with ``simplex="W"``. Where the spectra
        are held (``spectra_from_ == "blocks"``) there is no remixing to guard against, and the
        shares' Laplacian is used (``smoothing_``). The estimator fits with the one it is
        given; ``decomposition`` on a HyperSpy signal fits a map that looks mixed both ways
        and keeps the fit the counts prefer.

    Attributes
    ----------
    W_ : ndarray (m × k)
        In the units of the data: ``G @ W_ == components_.T`` for a 2-D G (``W_ / scale_`` is the
        internal W, which satisfies the W simplex).
    H_ : ndarray (k × pixels)
        Abundances (under the H simplex: fractions summing to 1 per pixel).
    components_ : ndarray (k × channels)
        Phase spectra (G·W)ᵀ in counts, so ``fit_transform(X) @ components_ ≈ X``.
    G_ : ndarray or None
        G at the end of the fit (the callback may have replaced it).
    scale_ : float
        Internal data scale (mean pixel sum / k).
    n_iter_ : int
    loss_history_ : list of float
        F (scaled units) of the iterates ``loss_iterations_``.
    loss_iterations_ : list of int
    n_restarts_ : int
        Returns to the last checked iterate because F rose (see ``momentum``).
    move_history_ : list of (int, float, float, float)
        Every 10 iterations: the iteration, the largest change of a spectrum's angle (degrees)
        and the root-mean-square and largest change of an abundance fraction over the 10
        iterations before (recorded whenever ``tol > 0``).
    stop_reason_ : {"converged", "max_iter", "interrupted"}
    iteration_times_ : list of float
        Seconds of every iteration of the main loop.
    setup_time_ : float
        Seconds of the fit outside its main loop: reading, start, binned levels, warm-up and
        the refit of H at the composition bound.
    persist_, n_chunks_, compact_bytes_
        Fits of a dask array only: where the chunks lived (``"memory"`` or ``"stream"``),
        their number and their compact size in bytes.
    init_note_ : str
        Non-empty when the fit from the extrapolated start lost a phase (less than
        :data:`COLLAPSE_SHARE` of the abundance or counts) and was redone with
        ``init_extrapolation=0``.
    reconstruction_err_ : float
        Final F.
    n_features_in_ : int
        Number of channels.
    lambda_L_ : float
        The λ used (``lambda_L``, or the dose-dependent choice of ``lambda_L=None``).
    spectra_from_ : {"pixels", "blocks"}
        Where W was estimated (see ``spectra_from``).
    smoothing_ : {"shares", "model"}
        The smoothing prior used (see ``smoothing``: ``"shares"`` where the spectra were
        held).
    init_extrapolation_ : float
        The extrapolation of the start used (see ``init_extrapolation``).
    final_shift_ : ndarray (k,)
        How far each phase was moved to its bound after the fit, as β of
        W_j ← W_j + β (W_j − W_dominant) (0: not moved; see ``final_extrapolation``).
    final_iter_ : int
        Iterations of the refit of H after that move (not counted in ``n_iter_``).
    coarse_iter_ : list of (int, int)
        The binned levels before the full-resolution iterations (see
        :mod:`esmpy_hs.nmf._coarse`): the bin factor and the iterations of each level,
        coarsest first. At low dose (W held) the coarse-to-fine start of the abundances; on a
        large map whose spectra are fitted from the pixels, the joint fit on the map binned
        b × b (one level). [] when the start went straight to the full-resolution warm-up.
        Not counted in ``n_iter_``; their time is counted in ``setup_time_``.

    Notes
    -----
    The sparsity prior keeps a phase with pure pixels (a matrix) pure: without it the likelihood
    is flat along mixtures and the Laplacian, which prefers flat maps, drifts that phase outward.
    The smoothing denoises the maps and holds the particles at the composition bound; its weight
    grows as 1 / dose (``lambda_L=None``), and at low dose the spectra come from binned blocks
    (``spectra_from="auto"``, with the start extrapolated all the way and refined with the
    sparsity prior). docs/choosing.rst explains the defaults; docs/validation.rst gives the
    measurements they were chosen on.
    """

    def __init__(
        self,
        G: np.ndarray | None = None,
        n_components: int = 2,
        *,
        lambda_L: float | None = None,
        mu: float | np.ndarray = 0.01,
        epsilon_reg: float = 0.01,
        simplex: str | None = "H",
        simplex_rows: np.ndarray | None = None,
        fixed_W: np.ndarray | None = None,
        fixed_H: np.ndarray | None = None,
        init: str | tuple | dict = "auto",
        max_iter: int = 2000,
        tol: float = 1e-8,
        angle_tol: float = 0.01,
        abundance_tol: float = 2.5e-4,
        momentum: float = 0.5,
        random_state: Any = None,
        shape_2d: tuple[int, ...] | None = None,
        channels_first: bool = False,
        dtype: str = "float64",
        loss_every: int = 10,
        callback: Callable | None = None,
        callback_every: int = 1,
        progress: bool = True,
        eps: float = 1e-10,
        init_iter: int = 100,
        init_extrapolation: float | None = None,
        final_extrapolation: float = 1.0,
        spectra_from: str = "auto",
        sparsity_on: str = "share",
        smoothing: str = "shares",
    ) -> None:
        self.G = G
        self.n_components = n_components
        self.lambda_L = lambda_L
        self.mu = mu
        self.epsilon_reg = epsilon_reg
        self.simplex = simplex
        self.simplex_rows = simplex_rows
        self.fixed_W = fixed_W
        self.fixed_H = fixed_H
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.angle_tol = angle_tol
        self.abundance_tol = abundance_tol
        self.momentum = momentum
        self.random_state = random_state
        self.shape_2d = shape_2d
        self.channels_first = channels_first
        self.dtype = dtype
        self.loss_every = loss_every
        self.callback = callback
        self.callback_every = callback_every
        self.progress = progress
        self.eps = eps
        self.init_iter = init_iter
        self.init_extrapolation = init_extrapolation
        self.final_extrapolation = final_extrapolation
        self.spectra_from = spectra_from
        self.sparsity_on = sparsity_on
        self.smoothing = smoothing

    # ------------------------------------------------------------------ sklearn plumbing
    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params) -> SmartNMF:
        """Set constructor parameters (scikit-learn convention)."""
        for name, value in params.items():
            if name not in _PARAMS:
                raise ValueError(f"invalid parameter {name!r} for SmartNMF; valid: {_PARAMS}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"SmartNMF(n_components={self.n_components}, simplex={self.simplex!r})"

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, **params) -> SmartNMF:
        """Fit the model to X (counts; pixels × channels unless ``channels_first``)."""
        self.fit_transform(X, **params)
        return self

    def fit_transform(
        self, X, y=None, W=None, H=None, *, persist: str = "auto", client=None
    ) -> np.ndarray:
        """Fit and return the abundances ``H_.T`` (pixels × k).

        ``fit_transform(X) @ components_`` approximates X in counts. ``W``/``H`` (in the units of
        ``W_``/``H_``) override ``init``.

        X may be a dask array (pixels × channels, or channels × pixels with ``channels_first``):
        it is then fitted chunk by chunk without being loaded whole (the same iterates as in
        memory), see :func:`esmpy_hs.nmf.fit_chunked` for ``persist`` (``"auto"``, ``"memory"`` or
        ``"stream"``) and ``client`` (None: a ``dask.distributed`` client if one is open;
        False: never). Both are ignored for in-memory X. The result is a NumPy array.

        X may also be a :class:`esmpy_hs.nmf._chunked.ChunkedSource` its caller opened (its
        chunks already read, e.g. with the summed spectrum of all channels); the fit closes it;
        or counts the caller compacted with :func:`esmpy_hs.nmf._data.as_compact` (pixels ×
        channels, the fit's ``dtype`` for non-integer counts), which it can read again after
        the fit.
        """
        if (W is None) != (H is None):
            raise ValueError("pass both W and H to fit_transform, or neither")
        return self._fit_transform(X, W, H, persist=persist, client=client)

    def _fit_transform(self, X, W=None, H=None, *, persist="auto", client=None) -> np.ndarray:
        """The fit behind ``fit`` and ``fit_transform``: check, open, plan, start, iterate."""
        t0 = time.perf_counter()
        params = self.get_params()
        chunked = sys.modules.get("esmpy_hs.nmf._chunked")  # imported with dask, when needed
        if params["smoothing"] == "model" and (
            is_dask_array(X) or (chunked is not None and isinstance(X, chunked.ChunkedSource))
        ):
            raise ValueError(
                "smoothing='model' is built for in-memory fits: fit the map in memory, or use "
                "smoothing='shares' for a chunked (lazy) fit"
            )
        if chunked is not None and isinstance(X, chunked.ChunkedSource):
            # a source the caller opened (its chunks read once already)
            if np.dtype(X.float_dtype) != np.dtype(params["dtype"]):
                raise ValueError(f"the source holds {X.float_dtype} counts, the fit dtype is "
                                 f"{np.dtype(params['dtype'])}")  # fmt: skip
            settings = settle(params, X.stats.n_channels, X.stats.n_pixels)
            source = X
        elif isinstance(X, CompactCounts):
            # counts the caller compacted (``nmf._data.as_compact``), e.g. to read them again
            # after the fit: the same source as for the array they came from
            settings = settle(params, X.n_channels, X.n_pixels)
            stored = X.dense if X.dense is not None else X.counts
            if stored.dtype.kind == "f" and stored.dtype != np.dtype(settings.dtype):
                raise ValueError(f"the compacted counts hold {stored.dtype} values, the fit "
                                 f"dtype is {np.dtype(settings.dtype)}")  # fmt: skip
            source = InMemory(X)
        elif is_dask_array(X):
            from esmpy_hs.nmf._chunked import ChunkedSource, prepare_array

            X = prepare_array(X, channels_first=bool(self.channels_first))
            settings = settle(params, *shape_of(X))  # before any chunk is read
            source = ChunkedSource(X, settings.dtype, persist, client)
        else:
            settings = settle(params, *shape_of(X, channels_first=bool(self.channels_first)))
            source = InMemory(as_compact(X, channels_first=bool(self.channels_first),
                                         float_dtype=settings.dtype))  # fmt: skip
        try:
            plan = resolve(settings, source.stats.total)
            if settings.smoothing == "model" and not plan.hold_W:
                plan = _with_model_smoothing(plan, source)
            init = self.init if W is None else (W, H)
            res, setup, times, plan = self._run(plan, source, init, t0)
            self.init_note_ = ""
            if W is None and init == "auto" and plan.extrapolation > 0 \
                    and res.stop_reason != "interrupted":  # fmt: skip
                D = compute_D(res.G, res.W, np.float64)
                weak = collapsed_phases(res.Ht, D.sum(axis=0), settings.simplex == "H")
                if weak:
                    # the extrapolated start (particles never seen pure) lost a phase: refit
                    # from the measured extremes and keep that fit
                    plan = with_extrapolation(plan, 0.0)
                    res, setup, times, plan = self._run(plan, source, init, time.perf_counter())
                    what = "the abundance" if settings.simplex == "H" else "the counts"
                    self.init_note_ = (
                        f"phase(s) {weak} held < {100 * COLLAPSE_SHARE:g} % of {what} from the "
                        "extrapolated start; refitted with init_extrapolation=0"
                    )
        finally:
            source.close()
        self._store(res, plan, source.stats.n_channels)
        self.setup_time_, self.iteration_times_ = setup, times
        for key, value in getattr(source, "details", {}).items():
            setattr(self, f"{key}_", value)
        return np.array(res.Ht, dtype=np.float64)

    def _run(self, plan: Plan, source, init, t0: float):
        """Start and fit; returns the result, the set-up seconds, the iteration times and the
        plan the fit ran (the smoothing of the model's counts fixes its scale at the start)."""
        start = initial(plan, source, init)
        if plan.hp.model is not None:
            # the smoothing of the model's counts: its scale c from the start (the prior's
            # value there is the shares' Laplacian's)
            from esmpy_hs.nmf._laplacian import gram

            S0 = gram(start.Ht, plan.hp.adj_indptr, plan.hp.adj_indices)
            plan = replace(plan, hp=replace(plan.hp, model=plan.hp.model.at_start(
                compute_D(plan.settings.G, start.W, np.float64), S0)))  # fmt: skip
        times: list[float] = []
        res = run(plan, source, start, update_W=not plan.hold_W, callback=self.callback,
                  callback_every=int(self.callback_every), owner=self,
                  progress=bool(self.progress), timings=times)  # fmt: skip
        setup = time.perf_counter() - t0 - sum(times)
        return res, setup, times, plan

    def _store(self, res, plan: Plan, n_channels: int) -> None:
        scale = plan.scale
        self.plan_ = plan
        self.scale_ = float(scale)
        self.lambda_L_ = plan.lam
        self.spectra_from_ = plan.spectra_from
        self.smoothing_ = "shares" if plan.hp.model is None else "model"
        self.init_extrapolation_ = plan.extrapolation
        self.final_shift_ = np.zeros(plan.settings.k) if res.shift is None else res.shift
        self.final_iter_ = int(res.final_iter)
        self.coarse_iter_ = list(res.coarse)
        self.G_ = res.G
        self.W_ = res.W * scale
        self.H_ = np.array(res.Ht.T, dtype=np.float64)
        D = compute_D(res.G, res.W, np.float64) * scale
        self.components_ = np.ascontiguousarray(D.T)
        self.n_components_ = D.shape[1]
        self.n_iter_ = int(res.n_iter)
        self.loss_history_ = list(res.loss_history)
        self.loss_iterations_ = list(res.loss_iterations)
        self.move_history_ = list(res.move_history)
        self.n_restarts_ = int(res.restarts)
        self.stop_reason_ = res.stop_reason
        last = res.final_loss if res.final_loss is not None else (
            res.loss_history[-1] if res.loss_history else np.nan)  # fmt: skip
        self.reconstruction_err_ = float(last)
        self.n_features_in_ = n_channels

    # ------------------------------------------------------------------ using the fit
    def _check_fitted(self) -> None:
        if not hasattr(self, "plan_"):
            raise ValueError("this SmartNMF is not fitted yet; call fit or fit_transform first")

    def _compact(self, X):
        data = as_compact(X, channels_first=bool(self.channels_first),
                          float_dtype=self.plan_.settings.dtype)  # fmt: skip
        if data.n_channels != self.n_features_in_:
            raise ValueError(
                f"X has {data.n_channels} channels but the model was fitted on "
                f"{self.n_features_in_}"
            )
        return data

    def transform(self, X, shape_2d: tuple[int, ...] | None = None) -> np.ndarray:
        """Abundances (pixels × k) of new pixels with W held at ``W_``.

        Uses the fit's scale, simplex, μ and ε_reg. The Laplacian (λ of the fit) needs the
        pixel grid of X: ``shape_2d`` here, or the estimator's ``shape_2d`` when X has that many
        pixels; otherwise λ > 0 raises. Fixed H entries are not used.
        """
        self._check_fitted()
        data = self._compact(X)
        p = data.n_pixels
        shape = None
        if shape_2d is not None:
            shape = normalise_shape(shape_2d, p)
        elif self.shape_2d is not None and int(np.prod(self.shape_2d)) == p:
            shape = normalise_shape(self.shape_2d, p)
        lam = self.lambda_L
        if lam is None:
            lam = self.lambda_L_ if shape is not None else 0.0
        lam = float(lam)
        if lam > 0 and shape is None:
            raise ValueError(
                f"lambda_L={lam} needs the pixel grid of X ({p} pixels): pass shape_2d"
            )
        plan = for_new_pixels(self.plan_, self.G_, data.total, p, shape, lam)
        k, simplex_H = self.n_components_, plan.hp.simplex
        W = self.W_ / self.scale_
        Ht = np.full((p, k), 1.0 / k)
        if not simplex_H:
            model = Ht @ compute_D(self.G_, W, np.float64).sum(axis=0)
            Ht *= (data.pixel_sums / self.scale_ / np.maximum(model, 1e-300))[:, None]
        feasible_H(Ht, simplex_H, None, plan.settings.eps)
        source = InMemory(data, desc="SmartNMF.transform")
        res = run(plan, source, Start(W, np.ascontiguousarray(Ht, dtype=plan.settings.dtype)),
                  update_W=False, progress=bool(self.progress))  # fmt: skip
        return np.array(res.Ht, dtype=np.float64)

    def inverse_transform(self, H: np.ndarray) -> np.ndarray:
        """Model counts ``H @ components_`` (pixels × channels) for abundances H (pixels × k)."""
        return np.asarray(H) @ self.components_

    def score(self, X) -> float:
        """Minus the objective F (scaled units) of X under the fitted W and H (fit data only).

        F is the one the fit minimised (the same λ, μ and scale), so
        ``-score(X) == reconstruction_err_`` on the data of the fit.
        """
        self._check_fitted()
        data = self._compact(X)
        if data.n_pixels != self.H_.shape[1]:
            raise ValueError("score is defined on the data the model was fitted on")
        Ht = np.ascontiguousarray(self.H_.T)
        return -evaluate_loss(data, self.G_, self.W_ / self.scale_, Ht, self.plan_.hp)


def _with_model_smoothing(plan, source):
    """The plan with the smoothing of the model's counts (:mod:`._model_smoothing`): Λ from the
    map's counts per channel (c is fixed at the start, :meth:`SmartNMF._run`)."""
    from esmpy_hs.nmf._model_smoothing import ModelSmoothing

    s = plan.settings
    sm = ModelSmoothing.from_channel_sums(source.stats.channel_sums, s.p, plan.scale)
    return replace(plan, hp=replace(plan.hp, model=sm))

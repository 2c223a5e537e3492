"""``SmartNMF``: the scikit-learn-style estimator over the solver functions.

All parameter validation happens here (:meth:`SmartNMF._validate`), the numerical work in the
private modules (see :mod:`esmpy_hs.nmf`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from esmpy_hs.nmf._data import CompactCounts, as_compact
from esmpy_hs.nmf._init import auto_init, bin_factor, random_init
from esmpy_hs.nmf._laplacian import empty_adjacency, grid_adjacency, normalise_shape
from esmpy_hs.nmf._solver import (
    HParams,
    WParams,
    evaluate_loss,
    feasible_H,
    feasible_W,
    h_rtol,
    solve,
)
from esmpy_hs.nmf._updates import compute_D

#: smallest λ of ``lambda_L=None`` when the pixel grid is known (see the class docstring)
DEFAULT_LAMBDA = 0.1
#: ``lambda_L=None`` gives λ = max(DEFAULT_LAMBDA, LAMBDA_COUNTS / scale): the Laplacian's weight
#: against the Poisson likelihood *in counts* stays the same at every dose (the objective is
#: divided by the data scale, so a fixed λ would weaken the prior as the dose falls). 20 counts
#: give λ ≈ 0.2 at 293 counts per pixel and k = 3, ≈ 3.4 at 18 and ≈ 0.34 on the real 71 GPa
#: map (177): chosen on the reference sample at both doses and on that map (10 counts, i.e.
#: λ = 0.1 at 293, gave 1.8 times worse low-dose maps and left the real map's Ca-perovskite
#: half mixed without absorption; see docs/validation.rst).
LAMBDA_COUNTS = 20.0
#: ``spectra_from="auto"`` estimates the spectra on binned blocks below this mean number of
#: counts per pixel (see the class docstring)
LOW_DOSE_COUNTS = 100.0
#: a phase holding less than this share of the abundance (H simplex) or of the modelled counts
#: after a fit from the extrapolated start counts as lost: the fit is redone from the measured
#: extremes
COLLAPSE_SHARE = 0.005

_PARAMS = (
    "G", "n_components", "lambda_L", "mu", "epsilon_reg", "simplex", "simplex_rows",
    "fixed_W", "fixed_H", "init", "max_iter", "tol", "random_state", "shape_2d",
    "channels_first", "dtype", "loss_every", "callback", "callback_every", "progress", "eps",
    "init_iter", "init_extrapolation", "spectra_from",
)  # fmt: skip


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
        when a pixel grid (``shape_2d``) is given: λ = max(0.1, 20 / ``scale_``), i.e. 0.2 at
        ≈ 300 counts per pixel (k = 3), 0.1 above ≈ 600, and growing as 1 / dose below, so that the
        smoothing keeps the same weight against the counts (:data:`LAMBDA_COUNTS`); 0 without a
        grid. The value used is ``lambda_L_``. An explicit λ > 0 without a grid raises.
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
        F is dominated by the Poisson noise floor, so the relative decrease is small (≈ 1e-6)
        even while the spectra still move by degrees; on a 128 × 128 map at 290 counts/pixel
        1e-8 stops at the plateau (≈ 1000 iterations), 1e-5 after ≈ 20 (far too early).
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
        (same shape); the convergence test then restarts.
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
        None: 0.5 when the spectra are fitted at full resolution (the Laplacian then carries
        the particles the rest of the way to the bound), 1 when they are held from the blocks
        (``spectra_from_ == "blocks"``: nothing moves them after the start). The value used is
        ``init_extrapolation_``.
    spectra_from : {"auto", "pixels", "blocks"}, default "auto"
        Where W (the phase spectra) is estimated. ``"pixels"``: W and H are fitted together on
        the full-resolution data. ``"blocks"``: W is the one of the ``init="auto"`` start,
        fitted on b × b binned blocks (about 3000 counts each), and held; the full-resolution
        fit updates H only. ``"auto"``: ``"blocks"`` when the mean pixel holds fewer than
        :data:`LOW_DOSE_COUNTS` counts and the start bins (``init="auto"`` with a grid),
        ``"pixels"`` otherwise. At low dose every pixel's abundances are free parameters fitted
        to a handful of counts, and the joint fit bends the spectra to follow that noise (at
        18 counts per pixel the spectra of the reference sample go from 5° at the start to 30°);
        binned blocks hold enough counts per free abundance to pin the spectra, and the linear
        model is unchanged by binning. The mode used is ``spectra_from_``.

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
    stop_reason_ : {"converged", "max_iter", "interrupted"}
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
    init_extrapolation_ : float
        The extrapolation of the start used (see ``init_extrapolation``).

    Notes
    -----
    The defaults μ = 0.01, ε_reg = 0.01 and λ from the dose (0.2 at 293 counts per pixel; all on
    data scaled to k counts per mean pixel) were chosen on the reference sample of the validation
    study (three phases, two of them particles never seen pure) and the real 71 GPa map,
    together with the start (``init_extrapolation``). The sparsity
    prior keeps a phase with pure pixels (a matrix) pure: without it the likelihood is flat
    along mixtures and the Laplacian, which prefers flat maps, drifts that phase outward. The
    smoothing denoises the maps and holds the particles at the composition bound. Larger λ
    pushes every phase further outward (λ = 3 drifted the matrix in the runs that chose the
    defaults); μ = 0.05 merged the particles with the matrix there. Below ≈ 600 counts per pixel
    λ grows as 1 / dose (``lambda_L=None``) and below 100 the spectra come from binned blocks
    (``spectra_from="auto"``, with the start extrapolated all the way and refined with the
    sparsity prior): at 18 counts per pixel this takes the reference sample from 28° to 2.6°
    (mean spectral angle).
    See the documentation page on choosing the regularisation.
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
        spectra_from: str = "auto",
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
        self.spectra_from = spectra_from

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

    # ------------------------------------------------------------------ validation
    def _validate(self, data: CompactCounts) -> dict:
        """Check every parameter against the data; return the resolved settings."""
        n, p = data.n_channels, data.n_pixels
        k = self.n_components
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_components must be a positive integer, got {k!r}")
        k = int(k)
        if k > min(n, p):
            raise ValueError(
                f"n_components={k} is larger than the data allow: X has {p} pixels and "
                f"{n} channels (k ≤ {min(n, p)})"
            )
        dtype = np.dtype(self.dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        # G
        G = self.G
        if G is not None:
            G = np.asarray(G, dtype=np.float64)
            if G.ndim == 2:
                if G.shape[0] != n:
                    raise ValueError(
                        f"G has shape {G.shape}: its {G.shape[0]} rows must match the "
                        f"{n} channels of X"
                    )
            elif G.ndim == 3:
                if G.shape[0] != k or G.shape[1] != n:
                    raise ValueError(
                        f"a 3-D G must have shape (n_components, channels, m) = ({k}, {n}, m), "
                        f"got {G.shape}"
                    )
            else:
                raise ValueError(f"G must be 2-D or 3-D, got shape {G.shape}")
            if not np.all(np.isfinite(G)):
                raise ValueError(f"G contains {int((~np.isfinite(G)).sum())} non-finite values")
            if G.min() < 0:
                raise ValueError(
                    f"G contains {int((G < 0).sum())} negative entries (minimum {G.min()!r}); "
                    "G must be non-negative"
                )
            if G.shape[-1] < 1:
                raise ValueError(f"G must have at least one column, got shape {G.shape}")
            if G.ndim == 2 and k > G.shape[1]:
                raise ValueError(
                    f"n_components={k} is larger than the {G.shape[1]} columns of G allow "
                    "(D = G·W would be rank-deficient)"
                )
            G = np.ascontiguousarray(G)
        m = n if G is None else G.shape[-1]
        # constraint
        if self.simplex not in ("H", "W", None):
            raise ValueError(f"simplex must be 'H', 'W' or None, got {self.simplex!r}")
        if self.simplex_rows is None:
            rows = np.ones(m, dtype=bool)
        else:
            rows = np.asarray(self.simplex_rows)
            if rows.shape != (m,) or rows.dtype != bool:
                raise ValueError(
                    f"simplex_rows must be a boolean array of shape ({m},), got "
                    f"{rows.dtype} array of shape {rows.shape}"
                )
        eps = float(self.eps)
        if not (0 < eps < 1e-3):
            raise ValueError(f"eps must be in (0, 1e-3), got {self.eps!r}")
        # regularisation
        shape = None
        if self.shape_2d is not None:
            shape = normalise_shape(self.shape_2d, p)
        lam = self.lambda_L
        if lam is None and shape is None:
            lam = 0.0
        # None with a grid: chosen from the data scale in _start
        lam = np.inf if lam is None else float(lam)
        if np.isnan(lam) or lam < 0 or (np.isinf(lam) and self.lambda_L is not None):
            raise ValueError(f"lambda_L must be a finite number ≥ 0, got {self.lambda_L!r}")
        if lam > 0 and shape is None:
            raise ValueError(
                f"lambda_L={lam} needs the pixel grid: pass shape_2d=(rows, cols) (or (n,) for "
                "a line scan), or set lambda_L=0"
            )
        mu = np.asarray(self.mu, dtype=np.float64)
        if mu.ndim == 0:
            mu = np.full(k, float(mu))
        if mu.shape != (k,) or not np.all(np.isfinite(mu)) or np.any(mu < 0):
            raise ValueError(f"mu must be a number ≥ 0 or {k} numbers ≥ 0, got {self.mu!r}")
        eps_reg = float(self.epsilon_reg)
        if not np.isfinite(eps_reg) or eps_reg <= 0:
            raise ValueError(f"epsilon_reg must be > 0, got {self.epsilon_reg!r}")
        # fixed entries
        fixed_W = None
        if self.fixed_W is not None:
            fixed_W = np.array(self.fixed_W, dtype=np.float64)
            if fixed_W.shape != (m, k):
                raise ValueError(f"fixed_W must have shape ({m}, {k}), got {fixed_W.shape}")
            v = fixed_W[~np.isnan(fixed_W)]
            if np.any(~np.isfinite(v)) or np.any(v < 0):
                raise ValueError("fixed_W values must be finite and ≥ 0 (NaN marks free entries)")
            if self.simplex == "W":
                fs = np.nansum(fixed_W[rows], axis=0)
                nfree = np.isnan(fixed_W[rows]).sum(axis=0)
                bad = (fs > 1 - nfree * eps + 1e-12) | ((nfree == 0) & (np.abs(fs - 1) > 1e-9))
                if np.any(bad):
                    raise ValueError(
                        "fixed_W is inconsistent with the W simplex: the fixed simplex entries "
                        f"of each column must sum to ≤ 1 (= 1 if all are fixed); sums {fs}"
                    )
        fixed_Ht = None
        if self.fixed_H is not None:
            fixed_H = np.array(self.fixed_H, dtype=np.float64)
            if fixed_H.shape != (k, p):
                raise ValueError(f"fixed_H must have shape ({k}, {p}), got {fixed_H.shape}")
            v = fixed_H[~np.isnan(fixed_H)]
            if np.any(~np.isfinite(v)) or np.any(v < 0):
                raise ValueError("fixed_H values must be finite and ≥ 0 (NaN marks free entries)")
            if self.simplex == "H":
                fs = np.nansum(fixed_H, axis=0)
                nfree = np.isnan(fixed_H).sum(axis=0)
                bad = (fs > 1 - nfree * eps + 1e-12) | ((nfree == 0) & (np.abs(fs - 1) > 1e-9))
                if np.any(bad):
                    raise ValueError(
                        "fixed_H is inconsistent with the H simplex: the fixed entries of each "
                        f"pixel must sum to ≤ 1 (= 1 if all are fixed); {int(bad.sum())} pixels "
                        "violate it"
                    )
            fixed_Ht = np.ascontiguousarray(fixed_H.T)
        for name in ("max_iter", "loss_every", "callback_every", "init_iter"):
            v = getattr(self, name)
            lo = 0 if name in ("max_iter", "init_iter") else 1
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"{name} must be an integer ≥ {lo}, got {v!r}")
        if self.spectra_from not in ("auto", "pixels", "blocks"):
            raise ValueError(
                f"spectra_from must be 'auto', 'pixels' or 'blocks', got {self.spectra_from!r}"
            )
        if self.spectra_from == "blocks" and not (
            isinstance(self.init, str) and self.init == "auto" and shape is not None
        ):
            raise ValueError(
                "spectra_from='blocks' takes the spectra of the binned start: it needs "
                "init='auto' and the pixel grid (shape_2d)"
            )
        gamma = 0.5 if self.init_extrapolation is None else float(self.init_extrapolation)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(
                f"init_extrapolation must be in [0, 1], got {self.init_extrapolation!r}"
            )
        tol = float(self.tol)
        if not np.isfinite(tol) or tol < 0:
            raise ValueError(f"tol must be ≥ 0, got {self.tol!r}")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable, got {self.callback!r}")
        if data.total <= 0:
            raise ValueError(f"X (shape {p} pixels × {n} channels) contains no counts")
        return {
            "k": k, "n": n, "p": p, "m": m, "G": G, "rows": rows, "eps": eps, "shape": shape,
            "lam": lam, "mu": mu, "eps_reg": eps_reg, "fixed_W": fixed_W, "fixed_Ht": fixed_Ht,
            "dtype": dtype, "tol": tol,
        }  # fmt: skip

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
        memory), see :func:`esmpy_hs.nmf.fit_chunked` for ``persist`` (``"auto"``, ``"memory"``
        or ``"stream"``) and ``client`` (None: a ``dask.distributed`` client if one is open;
        False: never). Both are ignored for in-memory X. The result is a NumPy array.
        """
        if (W is None) != (H is None):
            raise ValueError("pass both W and H to fit_transform, or neither")
        Ht = self._fit_transform_once(X, W, H, persist, client)
        self.init_note_ = ""
        if (
            W is None
            and isinstance(self.init, str)
            and self.init == "auto"
            and self.init_extrapolation_ > 0
            and self.stop_reason_ != "interrupted"
        ):
            weak = self._collapsed_phases()
            if weak:
                # the extrapolated start (particles never seen pure) lost a phase: refit from the
                # measured extremes and keep that fit
                gamma = self.init_extrapolation
                self.init_extrapolation = 0.0
                try:
                    Ht = self._fit_transform_once(X, None, None, persist, client)
                finally:
                    self.init_extrapolation = gamma
                what = "the abundance" if self.simplex == "H" else "the counts"
                self.init_note_ = (
                    f"phase(s) {weak} held < {100 * COLLAPSE_SHARE:g} % of {what} from the "
                    "extrapolated start; refitted with init_extrapolation=0"
                )
        return Ht

    def _collapsed_phases(self) -> list[int]:
        """Phases whose share is below :data:`COLLAPSE_SHARE`: of the abundance under the H
        simplex (a phase that fills almost no volume, whatever its spectrum), of the modelled
        counts otherwise."""
        counts = self.H_.sum(axis=1)
        if self.simplex != "H":
            counts = counts * self.components_.sum(axis=1)
        total = counts.sum()
        if not total > 0:
            return []
        return [int(j) for j in np.flatnonzero(counts / total < COLLAPSE_SHARE)]

    def _fit_transform_once(self, X, W, H, persist, client) -> np.ndarray:
        from esmpy_hs.nmf._chunked import fit_transform_chunked, is_dask_array

        if is_dask_array(X):
            return fit_transform_chunked(self, X, W, H, persist=persist, client=client)
        s = self._validate_and_store(X)
        data, G = s["data"], s["G"]
        scale, hp, wp, W0, Ht0, h_only = self._start(s, data, self.init if W is None else (W, H))
        if h_only > 0:
            r0 = solve(data, G, W0, Ht0, hp, wp, max_iter=h_only, tol=0.0, loss_every=h_only,
                       update_W_=False)  # fmt: skip
            Ht0 = r0.Ht
        res = solve(
            data, G, W0, Ht0, hp, wp, max_iter=int(self.max_iter), tol=s["tol"],
            update_W_=not s["hold_W"], loss_every=int(self.loss_every), callback=self.callback,
            callback_every=int(self.callback_every), callback_owner=self, out_scale=scale,
            progress=bool(self.progress),
        )  # fmt: skip
        self._store(res, scale, data)
        return np.array(res.Ht, dtype=np.float64)

    def _start(self, s: dict, data: CompactCounts, init) -> tuple:
        """Scale, parameters and feasible start shared by the in-memory and chunked fits.

        ``data`` needs ``total``, ``n_pixels`` and ``pixel_sums``; ``init="auto"`` also reads its
        counts (the chunked driver passes a stand-in holding the binned counts, see
        :mod:`._chunked`). Returns ``(scale, hp, wp, W0, Ht0, h_only)``.
        """
        G, k = s["G"], s["k"]
        scale = data.total / (data.n_pixels * k)
        simplex_H = self.simplex == "H"
        fixed_W_int = s["fixed_W"]
        if fixed_W_int is not None and self.simplex != "W":
            fixed_W_int = fixed_W_int / scale
        wp = WParams(self.simplex == "W", s["rows"], fixed_W_int, s["eps"], 1e-13)
        if np.isinf(s["lam"]):
            s["lam"] = max(DEFAULT_LAMBDA, LAMBDA_COUNTS / scale)
        self.lambda_L_ = float(s["lam"])
        binned_start = (
            isinstance(init, str) and init == "auto" and s["shape"] is not None
            and bin_factor(s["shape"], data.total / data.n_pixels, k) > 1
        )  # fmt: skip
        mode = self.spectra_from
        if mode == "auto":
            low = data.total / data.n_pixels < LOW_DOSE_COUNTS
            mode = "blocks" if (low and binned_start) else "pixels"
        s["hold_W"] = mode == "blocks"
        self.spectra_from_ = mode
        gamma = self.init_extrapolation
        s["gamma"] = (1.0 if s["hold_W"] else 0.5) if gamma is None else float(gamma)
        self.init_extrapolation_ = s["gamma"]
        adj = grid_adjacency(s["shape"]) if s["lam"] > 0 else empty_adjacency(data.n_pixels)
        hp = HParams(
            1.0 / scale, data.total / scale, s["mu"], s["eps_reg"], s["lam"], *adj,
            simplex_H, s["fixed_Ht"], s["eps"], h_rtol(s["dtype"]),
        )  # fmt: skip
        W0, Ht0, h_only = self._initial(init, data, G, k, scale, s, wp, simplex_H)
        feasible_W(W0, wp)
        feasible_H(Ht0, simplex_H, s["fixed_Ht"], s["eps"])
        Ht0 = np.ascontiguousarray(Ht0, dtype=s["dtype"])
        return scale, hp, wp, W0, Ht0, h_only

    def _validate_and_store(self, X) -> dict:
        dtype = np.dtype(self.dtype) if self.dtype in ("float32", "float64") else np.float64
        data = as_compact(X, channels_first=bool(self.channels_first), float_dtype=dtype)
        s = self._validate(data)
        s["data"] = data
        return s

    def _initial(self, init, data, G, k, scale, s, wp, simplex_H):
        """Starting (W internal, Ht) and the number of H-only iterations to run first."""
        m, p = s["m"], data.n_pixels
        if isinstance(init, dict):
            init = (init.get("W"), init.get("H"))
        if isinstance(init, tuple | list):
            if len(init) != 2:
                raise ValueError("init as a tuple must be (W, H)")
            W0 = np.array(init[0], dtype=np.float64)
            H0 = np.array(init[1], dtype=np.float64)
            if W0.shape != (m, k) or H0.shape != (k, p):
                raise ValueError(
                    f"init (W, H) must have shapes ({m}, {k}) and ({k}, {p}), got {W0.shape} "
                    f"and {H0.shape}"
                )
            if not (np.all(np.isfinite(W0)) and np.all(np.isfinite(H0))):
                raise ValueError("init (W, H) must be finite")
            return W0 / scale, np.ascontiguousarray(H0.T), 0
        if init == "random":
            rng = np.random.default_rng(self.random_state)
            W0, Ht0 = random_init(data, G, k, scale=scale, rows=m, simplex_H=simplex_H, wp=wp,
                                  dtype=np.float64, rng=rng)  # fmt: skip
            return W0, Ht0, 0
        if init == "auto":
            W0, Ht0 = auto_init(data, G, k, scale=scale, shape=s["shape"], simplex_H=simplex_H,
                                wp=wp, dtype=np.float64, n_refine=int(self.init_iter),
                                extrapolation=s["gamma"],
                                mu=s["mu"] if s["hold_W"] else None,
                                eps_reg=s["eps_reg"])  # fmt: skip
            return W0, Ht0, 10
        raise ValueError(f"init must be 'auto', 'random' or (W, H), got {init!r}")

    def _store(self, res, scale: float, data: CompactCounts) -> None:
        self.scale_ = float(scale)
        self.G_ = res.G
        self.W_ = res.W * scale
        self.H_ = np.array(res.Ht.T, dtype=np.float64)
        D = compute_D(res.G, res.W, np.float64) * scale
        self.components_ = np.ascontiguousarray(D.T)
        self.n_components_ = D.shape[1]
        self.n_iter_ = int(res.n_iter)
        self.loss_history_ = list(res.loss_history)
        self.loss_iterations_ = list(res.loss_iterations)
        self.stop_reason_ = res.stop_reason
        self.reconstruction_err_ = float(res.loss_history[-1]) if res.loss_history else np.nan
        self.n_features_in_ = data.n_channels

    def transform(self, X, shape_2d: tuple[int, ...] | None = None) -> np.ndarray:
        """Abundances (pixels × k) of new pixels with W held at ``W_``.

        Uses the fit's scale, simplex, μ and ε_reg. The Laplacian (λ of the fit) needs the
        pixel grid of X: ``shape_2d`` here, or the estimator's ``shape_2d`` when X has that many
        pixels; otherwise λ > 0 raises. Fixed H entries are not used.
        """
        if not hasattr(self, "W_"):
            raise ValueError("this SmartNMF is not fitted yet; call fit or fit_transform first")
        dtype = np.dtype(self.dtype)
        data = as_compact(X, channels_first=bool(self.channels_first), float_dtype=dtype)
        if data.n_channels != self.n_features_in_:
            raise ValueError(
                f"X has {data.n_channels} channels but the model was fitted on "
                f"{self.n_features_in_}"
            )
        k = self.n_components_
        p = data.n_pixels
        shape = None
        if shape_2d is not None:
            shape = normalise_shape(shape_2d, p)
        elif self.shape_2d is not None and int(np.prod(self.shape_2d)) == p:
            shape = normalise_shape(self.shape_2d, p)
        lam = self.lambda_L
        if lam is None:
            lam = getattr(self, "lambda_L_", DEFAULT_LAMBDA) if shape is not None else 0.0
        lam = float(lam)
        if lam > 0 and shape is None:
            raise ValueError(
                f"lambda_L={lam} needs the pixel grid of X ({p} pixels): pass shape_2d"
            )
        mu = np.asarray(self.mu, dtype=np.float64)
        mu = np.full(k, float(mu)) if mu.ndim == 0 else mu
        scale = self.scale_
        eps = float(self.eps)
        simplex_H = self.simplex == "H"
        adj = grid_adjacency(shape) if lam > 0 else empty_adjacency(p)
        hp = HParams(
            1.0 / scale, data.total / scale, mu, float(self.epsilon_reg), lam, *adj,
            simplex_H, None, eps, h_rtol(dtype),
        )  # fmt: skip
        W = self.W_ / scale
        wp = WParams(False, np.zeros(W.shape[0], dtype=bool), None, eps, 1e-13)
        D = compute_D(self.G_, W, np.float64)
        Ht = np.full((p, k), 1.0 / k)
        if not simplex_H:
            model = Ht @ D.sum(axis=0)
            Ht *= (data.pixel_sums / scale / np.maximum(model, 1e-300))[:, None]
        feasible_H(Ht, simplex_H, None, eps)
        res = solve(
            data, self.G_, W, np.ascontiguousarray(Ht, dtype=dtype), hp, wp,
            max_iter=int(self.max_iter), tol=float(self.tol), loss_every=int(self.loss_every),
            update_W_=False, progress=bool(self.progress), desc="SmartNMF.transform",
        )  # fmt: skip
        return np.array(res.Ht, dtype=np.float64)

    def inverse_transform(self, H: np.ndarray) -> np.ndarray:
        """Model counts ``H @ components_`` (pixels × channels) for abundances H (pixels × k)."""
        return np.asarray(H) @ self.components_

    def score(self, X) -> float:
        """Minus the objective F (scaled units) of X under the fitted W and H (fit data only)."""
        data = as_compact(X, channels_first=bool(self.channels_first))
        if data.n_pixels != self.H_.shape[1]:
            raise ValueError("score is defined on the data the model was fitted on")
        hp_scale = self.scale_
        k = self.n_components_
        mu = np.asarray(self.mu, dtype=np.float64)
        mu = np.full(k, float(mu)) if mu.ndim == 0 else mu
        lam = self.lambda_L
        lam = (1.0 if self.shape_2d is not None else 0.0) if lam is None else float(lam)
        adj = (grid_adjacency(normalise_shape(self.shape_2d, data.n_pixels)) if lam > 0
               else empty_adjacency(data.n_pixels))  # fmt: skip
        hp = HParams(1.0 / hp_scale, data.total / hp_scale, mu, float(self.epsilon_reg), lam,
                     *adj, self.simplex == "H", None, float(self.eps), 1e-13)  # fmt: skip
        Ht = np.ascontiguousarray(self.H_.T)
        return -evaluate_loss(data, self.G_, self.W_ / hp_scale, Ht, hp)

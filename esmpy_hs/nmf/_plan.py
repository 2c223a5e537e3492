"""Parameters of a fit, checked once and resolved into a :class:`Plan`.

Three steps, each pure, in the order a fit takes them:

1. :func:`validate_params`: every constructor parameter against the table :data:`PARAMETERS`
   (types and ranges), before anything is known about the data;
2. :func:`settle`: the parameters against the data's *shape* (channels × pixels), known for a
   dask array without reading a chunk: G's rows, the pixel grid, the shapes of fixed entries;
   returns :class:`Settings`;
3. :func:`resolve`: the settings and the data's statistics (total counts) give the
   :class:`Plan` every later step reads — the scale, λ, where the spectra come from, the start's
   extrapolation and the parameters of the H and W steps.

The choices made from the dose (``lambda_L=None``, ``spectra_from="auto"``,
``init_extrapolation=None``) are made here and only here; docs/choosing.rst explains them and
docs/validation.rst gives the measurements behind them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from esmpy_hs.nmf._coarse import coarse_shape, levels
from esmpy_hs.nmf._init import bin_factor
from esmpy_hs.nmf._laplacian import (
    empty_adjacency,
    grid_adjacency,
    grid_colouring,
    normalise_shape,
)
from esmpy_hs.nmf._solver import HParams, WParams, h_rtol

#: smallest λ of ``lambda_L=None`` when the pixel grid is known
DEFAULT_LAMBDA = 0.1
#: ``lambda_L=None`` gives λ = max(DEFAULT_LAMBDA, LAMBDA_COUNTS / scale): the weight of the
#: Laplacian against the Poisson likelihood *in counts* stays the same at every dose (the
#: objective is divided by the data scale, so a fixed λ would weaken the prior as the dose falls)
LAMBDA_COUNTS = 20.0
#: ``spectra_from="auto"`` estimates the spectra on binned blocks below this mean number of
#: counts per pixel
LOW_DOSE_COUNTS = 100.0
#: a phase holding less than this share of the abundance (H simplex) or of the modelled counts
#: after a fit from the extrapolated start counts as lost: the fit is redone from the measured
#: extremes
COLLAPSE_SHARE = 0.005


# ---------------------------------------------------------------------------- the table
def _integer(lo: int) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, bool) and isinstance(v, numbers.Integral) and v >= lo


def _real(lo: float, hi: float = np.inf, *, open_lo: bool = False,
          open_hi: bool = False) -> Callable[[Any], bool]:  # fmt: skip
    def check(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or np.isnan(v):
            return False
        above = v > lo if open_lo else v >= lo
        below = v < hi if open_hi else v <= hi
        return bool(above and below and np.isfinite(v))

    return check


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(*options) -> Callable[[Any], bool]:
    return lambda v: any(v is o or (isinstance(v, str) and v == o) for o in options)


def _is_float_dtype(v) -> bool:
    try:
        return np.dtype(v) in (np.dtype(np.float32), np.dtype(np.float64))
    except TypeError:
        return False


def _is_init(v) -> bool:
    if isinstance(v, str):
        return v in ("auto", "random")
    if isinstance(v, dict):
        return set(v) <= {"W", "H"}
    return isinstance(v, tuple | list)


def _is_grid(v) -> bool:
    try:
        shape = tuple(int(s) for s in np.atleast_1d(v))
    except (TypeError, ValueError):
        return False
    return len(shape) in (1, 2) and all(s >= 1 for s in shape)


def _is_weights(v) -> bool:
    a = np.asarray(v)
    ok = a.dtype.kind in "biuf" and a.ndim <= 1
    return ok and bool(np.all(np.isfinite(a)) and np.all(a >= 0))


_ANY = lambda v: True  # noqa: E731

#: every constructor parameter of :class:`~esmpy_hs.nmf.SmartNMF`: ``(check, what it must be)``;
#: checks that need the data's shape (G, ``simplex_rows``, ``fixed_W``, ``fixed_H``, the number
#: of μ values) are made by :func:`settle`
PARAMETERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "G": (_ANY, "None or an array"),
    "n_components": (_integer(1), "a positive integer"),
    "lambda_L": (_optional(_real(0.0)), "a finite number ≥ 0 or None"),
    "mu": (_is_weights, "a number ≥ 0 or one number ≥ 0 per phase"),
    "epsilon_reg": (_real(0.0, open_lo=True), "a number > 0"),
    "simplex": (_one_of("H", "W", None), "'H', 'W' or None"),
    "simplex_rows": (_ANY, "None or a boolean array"),
    "fixed_W": (_ANY, "None or an array"),
    "fixed_H": (_ANY, "None or an array"),
    "init": (_is_init, "'auto', 'random' or (W, H)"),
    "max_iter": (_integer(0), "an integer ≥ 0"),
    "tol": (_real(0.0), "a finite number ≥ 0"),
    "angle_tol": (_real(0.0, 180.0), "a number of degrees in [0, 180]"),
    "abundance_tol": (_real(0.0, 1.0), "in [0, 1]"),
    "momentum": (_real(0.0, 1.0), "in [0, 1]"),
    "random_state": (_ANY, "None, an int or a numpy Generator"),
    "shape_2d": (_optional(_is_grid), "(rows, cols) or (n,) with positive sizes, or None"),
    "channels_first": (_ANY, "True or False"),
    "dtype": (_is_float_dtype, "'float32' or 'float64'"),
    "loss_every": (_integer(1), "an integer ≥ 1"),
    "callback": (_optional(callable), "callable or None"),
    "callback_every": (_integer(1), "an integer ≥ 1"),
    "progress": (_ANY, "True or False"),
    "eps": (_real(0.0, 1e-3, open_lo=True, open_hi=True), "in (0, 1e-3)"),
    "init_iter": (_integer(0), "an integer ≥ 0"),
    "init_extrapolation": (_optional(_real(0.0, 1.0)), "in [0, 1] or None"),
    "final_extrapolation": (_real(0.0, 1.0), "in [0, 1]"),
    "spectra_from": (_one_of("auto", "pixels", "blocks"), "'auto', 'pixels' or 'blocks'"),
    "sparsity_on": (_one_of("share", "counts"), "'share' or 'counts'"),
    "smoothing": (_one_of("shares", "model"), "'shares' or 'model'"),
}


def validate_params(params: dict[str, Any]) -> None:
    """Check every parameter against :data:`PARAMETERS` (no data needed).

    Raises
    ------
    ValueError
        Naming the parameter, what it must be and the value given.
    """
    for name, (check, what) in PARAMETERS.items():
        value = params[name]
        if isinstance(value, np.generic):
            value = value.item()
        if not check(value):
            raise ValueError(f"{name} must be {what}, got {value!r}")
    init = params["init"]
    if isinstance(init, tuple | list) and len(init) != 2:
        raise ValueError("init as a tuple must be (W, H)")
    if params["smoothing"] == "model" and params["simplex"] == "W":
        raise ValueError(
            "smoothing='model' is built for simplex='H' or None (its W step has no W simplex); "
            "use smoothing='shares' with simplex='W'"
        )
    if params["spectra_from"] == "blocks" and not (
        isinstance(init, str) and init == "auto" and params["shape_2d"] is not None
    ):
        raise ValueError(
            "spectra_from='blocks' takes the spectra of the binned start: it needs "
            "init='auto' and the pixel grid (shape_2d)"
        )


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """The parameters checked against the data's shape (see :func:`settle`).

    ``G`` is float64 and C-contiguous (or None); ``rows`` the W-simplex rows; ``shape`` the
    pixel grid or None; ``lam`` the given λ or None (chosen from the dose by :func:`resolve`);
    ``fixed_W`` in the units of ``W_`` (or atomic fractions under the W simplex); ``fixed_Ht``
    pixels × k. The other fields copy the constructor parameters of the same name.
    """

    k: int
    n: int
    p: int
    m: int
    G: np.ndarray | None
    simplex: str | None
    rows: np.ndarray
    shape: tuple[int, ...] | None
    lam: float | None
    mu: np.ndarray
    eps_reg: float
    eps: float
    fixed_W: np.ndarray | None
    fixed_Ht: np.ndarray | None
    dtype: np.dtype
    tol: float
    angle_tol: float
    abundance_tol: float
    momentum: float
    max_iter: int
    loss_every: int
    init: Any
    init_iter: int
    init_extrapolation: float | None
    final_extrapolation: float
    spectra_from: str
    random_state: Any
    sparsity_on: str = "share"
    smoothing: str = "shares"


def _check_G(G, k: int, n: int) -> np.ndarray | None:
    if G is None:
        return None
    G = np.asarray(G, dtype=np.float64)
    if G.ndim == 2:
        if G.shape[0] != n:
            raise ValueError(
                f"G has shape {G.shape}: its {G.shape[0]} rows must match the {n} channels of X"
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
    if k > G.shape[-1]:
        raise ValueError(
            f"n_components={k} is larger than the {G.shape[-1]} columns of G allow "
            "(D = G·W would be rank-deficient)"
        )
    return np.ascontiguousarray(G)


def _check_fixed(values, shape: tuple[int, int], name: str, in_simplex: np.ndarray | None,
                 eps: float, what: str) -> np.ndarray | None:  # fmt: skip
    """Fixed entries (NaN = free) of W or H; ``in_simplex`` the rows under a sum constraint."""
    if values is None:
        return None
    fixed = np.array(values, dtype=np.float64)
    if fixed.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {fixed.shape}")
    v = fixed[~np.isnan(fixed)]
    if np.any(~np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"{name} values must be finite and ≥ 0 (NaN marks free entries)")
    if in_simplex is not None:
        fs = np.nansum(fixed[in_simplex], axis=0)
        nfree = np.isnan(fixed[in_simplex]).sum(axis=0)
        bad = (fs > 1 - nfree * eps + 1e-12) | ((nfree == 0) & (np.abs(fs - 1) > 1e-9))
        if np.any(bad):
            raise ValueError(f"{name} is inconsistent with the {what}")
    return fixed


def settle(params: dict[str, Any], n: int, p: int) -> Settings:
    """Check the parameters against data of ``n`` channels and ``p`` pixels.

    Needs the shape only, so a lazy fit fails here before any chunk is read. Runs
    :func:`validate_params` first.
    """
    validate_params(params)
    k = int(params["n_components"])
    if k > min(n, p):
        raise ValueError(
            f"n_components={k} is larger than the data allow: X has {p} pixels and "
            f"{n} channels (k ≤ {min(n, p)})"
        )
    G = _check_G(params["G"], k, n)
    m = n if G is None else G.shape[-1]
    simplex = params["simplex"]
    if params["simplex_rows"] is None:
        rows = np.ones(m, dtype=bool)
    else:
        rows = np.asarray(params["simplex_rows"])
        if rows.shape != (m,) or rows.dtype != bool:
            raise ValueError(
                f"simplex_rows must be a boolean array of shape ({m},), got "
                f"{rows.dtype} array of shape {rows.shape}"
            )
    eps = float(params["eps"])
    shape = None if params["shape_2d"] is None else normalise_shape(params["shape_2d"], p)
    lam = params["lambda_L"]
    if lam is not None:
        lam = float(lam)
    if shape is None and lam is not None and lam > 0:
        raise ValueError(
            f"lambda_L={lam} needs the pixel grid: pass shape_2d=(rows, cols) (or (n,) for "
            "a line scan), or set lambda_L=0"
        )
    if shape is None:
        lam = 0.0
    mu = np.asarray(params["mu"], dtype=np.float64)
    if mu.ndim == 0:
        mu = np.full(k, float(mu))
    if mu.shape != (k,):
        raise ValueError(f"mu must be a number ≥ 0 or {k} numbers ≥ 0, got {params['mu']!r}")
    fixed_W = _check_fixed(
        params["fixed_W"], (m, k), "fixed_W", rows if simplex == "W" else None, eps,
        "W simplex: the fixed simplex entries of each column must sum to ≤ 1 (= 1 if all are "
        "fixed)",
    )  # fmt: skip
    fixed_H = _check_fixed(
        params["fixed_H"], (k, p), "fixed_H", np.ones(k, dtype=bool) if simplex == "H" else None,
        eps, "H simplex: the fixed entries of each pixel must sum to ≤ 1 (= 1 if all are fixed)",
    )  # fmt: skip
    gamma = params["init_extrapolation"]
    return Settings(
        k=k, n=n, p=p, m=m, G=G, simplex=simplex, rows=rows, shape=shape, lam=lam, mu=mu,
        eps_reg=float(params["epsilon_reg"]), eps=eps, fixed_W=fixed_W,
        fixed_Ht=None if fixed_H is None else np.ascontiguousarray(fixed_H.T),
        dtype=np.dtype(params["dtype"]), tol=float(params["tol"]),
        angle_tol=float(params["angle_tol"]), abundance_tol=float(params["abundance_tol"]),
        momentum=float(params["momentum"]),
        max_iter=int(params["max_iter"]), loss_every=int(params["loss_every"]),
        init=params["init"], init_iter=int(params["init_iter"]),
        init_extrapolation=None if gamma is None else float(gamma),
        final_extrapolation=float(params["final_extrapolation"]),
        spectra_from=params["spectra_from"], random_state=params["random_state"],
        sparsity_on=str(params["sparsity_on"]), smoothing=str(params["smoothing"]),
    )  # fmt: skip


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """Everything a fit needs besides the counts and the start.

    Attributes
    ----------
    settings : Settings
    scale : float
        Data scale: mean pixel sum / k (the objective is computed on data divided by it).
    lam : float
        The λ used.
    hold_W : bool
        The spectra are the start's, estimated on binned blocks, and held
        (``spectra_from_ == "blocks"``).
    extrapolation : float
        Fraction of the way to the composition bound the start moves the minor phases.
    binned_start : bool
        The ``"auto"`` start bins the map.
    hp, wp : HParams, WParams
        Parameters of the H and W steps (scaled units).
    """

    settings: Settings
    scale: float
    lam: float
    hold_W: bool
    extrapolation: float
    binned_start: bool
    hp: HParams
    wp: WParams

    @property
    def move_tol(self) -> tuple[float, float] | None:
        """``(angle_tol, abundance_tol)`` of the movement rule, or None when it is off."""
        s = self.settings
        return (s.angle_tol, s.abundance_tol) if min(s.angle_tol, s.abundance_tol) > 0 else None

    @property
    def spectra_from(self) -> str:
        return "blocks" if self.hold_W else "pixels"


def default_lambda(scale: float) -> float:
    """λ of ``lambda_L=None`` on a pixel grid, for data of the given scale."""
    return max(DEFAULT_LAMBDA, LAMBDA_COUNTS / scale)


#: update H by red-black sweeps on a pixel grid where λ ≥ :data:`RED_BLACK_LAMBDA`
#: (:func:`._solver.sweep`); False moves every pixel at once everywhere (the update before;
#: kept for the benchmarks' same-process baselines, see docs/validation.rst)
RED_BLACK = True
#: smallest λ (scaled units) with red-black sweeps: there the Laplacian's curvature per pixel
#: (λ·deg/2 ≥ 20) dwarfs the data's (≈ k in these units) and the maps converge like a
#: diffusion, which the sweeps speed up (measured on the reference sample: 1.2–2× fewer
#: iterations at 1–5 counts per pixel, λ = 12–60; at 18 counts per pixel, λ = 3.3, −9 % and
#: +35 % on two seeds; the same counts at 293; see docs/validation.rst). Below it a pass per
#: iteration is kept instead of two.
RED_BLACK_LAMBDA = 10.0


def colouring(shape: tuple[int, ...] | None, lam: float) -> np.ndarray | None:
    """The pixels' colours of the red-black sweep, or None (no grid, λ below
    :data:`RED_BLACK_LAMBDA` or :data:`RED_BLACK` off)."""
    if not RED_BLACK or shape is None or lam < RED_BLACK_LAMBDA:
        return None
    return grid_colouring(shape)


#: start the full-resolution iterations from a coarse-to-fine fit of the abundances
#: (:mod:`._coarse`) where :func:`coarse_levels` says so; False: the H-only warm-up (the start
#: before, kept for the benchmarks' same-process baselines, see docs/validation.rst)
COARSE_TO_FINE = True
#: smallest λ (scaled units) of the coarse-to-fine start: 20, at k = 3 about 3 counts per pixel
#: and below (measured: 0.23–0.75 of the fit's time at λ = 20–60; at λ ≈ 12, 5 counts per
#: pixel, it saved nothing on two seeds; see docs/validation.rst)
COARSE_TO_FINE_LAMBDA = 20.0


#: a joint fit (W moves) of a large map starts from the same fit on the map binned b × b
#: (:func:`._coarse.joint_level`): the spectra converge there in passes b² times smaller and
#: the full-resolution iterations start near their end. False: the full-resolution fit from
#: the start alone (the fit before, kept for the benchmarks' same-process baselines; see
#: docs/validation.rst, "A binned level for the joint fit at scale")
COARSE_JOINT = True
#: the binned grid of that level holds at most this many blocks (a 128 × 128 grid)
COARSE_JOINT_BLOCKS = 16384
#: smallest bin factor of that level: at high dose a 2 × 2 block holds nearly as many nonzero
#: channels as its four pixels together, so its pass costs almost a full one
COARSE_JOINT_MIN_FACTOR = 4


def joint_factor(plan: Plan) -> int:
    """Bin factor b of the binned level of a joint fit (:data:`COARSE_JOINT`), or 0 for none.

    Used where W moves (``spectra_from="pixels"``) after the ``"auto"`` start with a physics G
    on the H simplex, on a 2-D grid with no fixed H entry, when the smallest power of two b
    that leaves at most :data:`COARSE_JOINT_BLOCKS` blocks is ≥
    :data:`COARSE_JOINT_MIN_FACTOR` (maps of more than 256 × 256 pixels at that bound).
    """
    s = plan.settings
    if not (COARSE_JOINT and not plan.hold_W and s.G is not None and s.simplex == "H"
            and s.fixed_Ht is None and s.shape is not None and len(s.shape) == 2):  # fmt: skip
        return 0
    b = 1
    while np.prod(coarse_shape(s.shape, b)) > COARSE_JOINT_BLOCKS:
        b *= 2
    return b if b >= COARSE_JOINT_MIN_FACTOR else 0


def coarse_levels(plan: Plan) -> list[int]:
    """Bin factors of the coarse-to-fine start (coarsest first), or [] for the warm-up.

    Used where W is held (``spectra_from="blocks"``: the main loop fits H alone, so the binned
    fits solve the same problem on coarser grids), the H step sweeps red-black on a 2-D grid,
    λ ≥ :data:`COARSE_TO_FINE_LAMBDA` (the maps converge like a diffusion) and no H entry is
    fixed. Where W moves (above 100 counts per pixel) a chain of levels was tried and
    rejected (docs/validation.rst); a large map takes one binned level of the joint fit
    instead (:func:`joint_factor`).
    """
    s = plan.settings
    if not (COARSE_TO_FINE and plan.hold_W and plan.hp.colour is not None
            and plan.lam >= COARSE_TO_FINE_LAMBDA and s.fixed_Ht is None
            and s.shape is not None and len(s.shape) == 2):  # fmt: skip
        return []
    return levels(s.shape, plan.lam)


def resolve(s: Settings, total: float) -> Plan:
    """The plan of a fit of data with ``total`` counts over ``s.p`` pixels.

    Raises
    ------
    ValueError
        When the data hold no counts.
    """
    if total <= 0:
        raise ValueError(f"X (shape {s.p} pixels × {s.n} channels) contains no counts")
    scale = total / (s.p * s.k)
    fixed_W = s.fixed_W
    if fixed_W is not None and s.simplex != "W":
        fixed_W = fixed_W / scale
    wp = WParams(s.simplex == "W", s.rows, fixed_W, s.eps, 1e-13)
    lam = default_lambda(scale) if s.lam is None else s.lam
    binned_start = (
        isinstance(s.init, str) and s.init == "auto" and s.shape is not None
        and bin_factor(s.shape, total / s.p, s.k) > 1
    )  # fmt: skip
    mode = s.spectra_from
    if mode == "auto":
        mode = "blocks" if (total / s.p < LOW_DOSE_COUNTS and binned_start) else "pixels"
    hold_W = mode == "blocks"
    gamma = s.init_extrapolation
    gamma = (1.0 if hold_W else 0.5) if gamma is None else gamma
    adj = grid_adjacency(s.shape) if lam > 0 else empty_adjacency(s.p)
    hp = HParams(
        1.0 / scale, total / scale, s.mu, s.eps_reg, lam, *adj, s.simplex == "H", s.fixed_Ht,
        s.eps, h_rtol(s.dtype), colouring(s.shape, lam), s.sparsity_on, total / scale / s.p,
    )  # fmt: skip
    return Plan(s, scale, float(lam), hold_W, float(gamma), binned_start, hp, wp)


def with_extrapolation(plan: Plan, gamma: float) -> Plan:
    """The same plan with another extrapolation of the start."""
    return replace(plan, extrapolation=float(gamma))


def for_new_pixels(plan: Plan, G: np.ndarray | None, total: float, n_pixels: int,
                   shape: tuple[int, ...] | None, lam: float) -> Plan:  # fmt: skip
    """The plan of :meth:`SmartNMF.transform`: the fit's scale and priors, H only.

    The pixels are new: their count ``total``, number and grid (``shape``, or None) replace the
    fit's; ``G`` is the one the fit ended with; fixed H entries and the W constraints do not
    apply (W is held).
    """
    s = replace(plan.settings, G=G, p=n_pixels, shape=shape, fixed_Ht=None)
    adj = grid_adjacency(shape) if lam > 0 else empty_adjacency(n_pixels)
    hp = replace(plan.hp, total_scaled=total / plan.scale, lam=lam, adj_indptr=adj[0],
                 adj_indices=adj[1], fixed_Ht=None, colour=colouring(shape, lam))  # fmt: skip
    wp = WParams(False, np.zeros(s.m, dtype=bool), None, s.eps, 1e-13)
    return replace(plan, settings=s, lam=lam, hold_W=True, hp=hp, wp=wp)

"""``decomposition(algorithm="smart_nmf")`` for EDS_ESMPY signals.

The steps, in order: read the metadata (:mod:`._metadata`), choose the channels to fit, build G
(:func:`esmpy_hs.physics.build_G`), translate phase priors (:mod:`._priors`), fit
:class:`esmpy_hs.nmf.SmartNMF`, then write HyperSpy's ``learning_results`` and the metadata node
``SmartNMF`` that :meth:`EDSespm.quantify_phases` reads (also after save/load).

Lazy signals take the same steps; only the fit differs: the fitted channels of the dask array are
unfolded to pixels × channels without computing them (:mod:`._lazy`) and fitted chunk by chunk
(:mod:`esmpy_hs.nmf._chunked`, options ``persist`` and ``client``); the loadings come back as a
NumPy array.

The record of the fit in ``metadata.SmartNMF`` is written and read by :mod:`._record`.
"""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from esmpy_hs.signals._metadata import read_acquisition
from esmpy_hs.signals._model import build_model, fit_channels
from esmpy_hs.signals._priors import parse_phases
from esmpy_hs.signals._record import (  # noqa: F401  (StaleResultError: public here too)
    NO_FIT,
    FitRecord,
    StaleResultError,
    check_current,
    read_record,
    write_record,
)
from esmpy_hs.signals._smoothing_choice import choose_smoothing
from esmpy_hs.signals._smoothing_choice import forget as _forget_smoothing_choice

_logger = logging.getLogger(__name__)

# HyperSpy's own decomposition keywords: (the value that means "off", why smart_nmf refuses others)
_HYPERSPY_KEYS = {
    "normalize_poissonian_noise": (False, "smart_nmf fits the raw counts with a Poisson "
        "likelihood, which already weights every channel by its noise; leave it out"),
    "navigation_mask": (None, "smart_nmf fits every pixel of the grid (the spatial "
        "regularisation links neighbours); crop the map with s.inav[...] instead"),
    "signal_mask": (None, "give the channels to fit as energy_range=(low, high) in keV "
        "instead (channels outside are not fitted)"),
    "centre": (None, "the Poisson model fits raw, uncentred counts"),
    "var_array": (None, "the Poisson model takes the variance from the model counts"),
    "var_func": (None, "the Poisson model takes the variance from the model counts"),
    "reproject": (None, "smart_nmf fits every pixel; there is nothing to reproject"),
}  # fmt: skip


#: below this share of the counts at or above the low cut lying in the fitted channels (or with
#: none there at all), smart_nmf refuses the map
MIN_COUNTS_IN_RANGE = 0.01


def _check_counts_in_range(signal, summed: np.ndarray, c0: int, c1: int, model) -> None:
    """Refuse a map whose counts (almost) all lie outside the fitted channels, saying where.

    ``summed`` is the map's summed spectrum. Channels below the low cut are left out of the
    comparison: the detector's noise peak at 0 keV may hold most of the counts of a real file.
    """
    inside = float(summed[c0:c1].sum())
    above_cut = float(summed[c0:].sum())
    if inside > 0 and inside >= MIN_COUNTS_IN_RANGE * above_cut:
        return
    total = float(summed.sum())
    if total <= 0:
        return  # no counts at all: the estimator says so
    e = signal.axes_manager.signal_axes[0].axis
    order = np.argsort(summed)[::-1]
    top = order[: max(1, int(np.searchsorted(np.cumsum(summed[order]), 0.9 * total)) + 1)]
    lo, hi = float(e[top.min()]), float(e[top.max()])
    units = signal.axes_manager.signal_axes[0].units or "keV"
    raise ValueError(
        f"only {100 * inside / total:.2g} % of the map's {total:.0f} counts lie in the fitted "
        f"range {model.energies[0]:.3g}–{model.energies[-1]:.3g} keV; 90 % of them lie between "
        f"{lo:.4g} and {hi:.4g} {units} on the signal axis. Check the energy axis (offset, "
        "scale and units: s.axes_manager.signal_axes[0]) or energy_range"
    )


def _navigation_grid(signal) -> tuple[int, ...] | None:
    """Pixel grid for the Laplacian, in the row-major order of the unfolded data."""
    shape = tuple(int(n) for n in signal.data.shape[: signal.axes_manager.navigation_dimension])
    if len(shape) in (1, 2):
        return shape
    return None


def _check_hyperspy_keywords(kwargs: dict) -> None:
    """Drop HyperSpy's decomposition keywords left at "off"; refuse others with the reason."""
    for key, (off, why) in _HYPERSPY_KEYS.items():
        if key not in kwargs:
            continue
        value = kwargs.pop(key)
        if value is off or (off is False and value is None):
            continue
        shown = f"<array of shape {np.shape(value)}>" if np.ndim(value) > 0 else repr(value)
        raise ValueError(f"{key}={shown} is not supported by smart_nmf: {why}")


def _check_client(client) -> None:
    """``client`` must be None, False or a ``dask.distributed.Client``."""
    if client is None or client is False:
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask.distributed not installed
        Client = None
    if Client is None or not isinstance(client, Client):
        raise TypeError(
            f"client must be None (use the dask.distributed client that is open, if any), "
            f"False (never) or a dask.distributed.Client, got {client!r}"
        )


def check_counts(data, c0: int, c1: int) -> None:
    """Warn when the data do not look like raw counts (non-integer or scaled values).

    Eager data are checked whole over the fitted channels (in blocks); lazy data on their
    first rows (about 4 million values, read once). Negative, NaN and infinite values are refused.
    """
    from esmpy_hs.signals._metadata import ImplausibleInputWarning

    if data.dtype.kind in "iub":
        return
    if hasattr(data, "compute"):  # lazy: the first rows (≤ ~4 M values) show scaled data
        per_row = int(np.prod(data.shape[1:-1], dtype=np.int64)) * (c1 - c0)
        rows = max(1, min(data.shape[0], 2**22 // max(per_row, 1)))
        data = data[:rows, ..., c0:c1].compute() if data.ndim > 1 else data[c0:c1].compute()
        c0, c1 = 0, data.shape[-1]
    flat = np.asarray(data).reshape(-1, data.shape[-1])  # a view of contiguous data
    step = max(1, 2**22 // max(c1 - c0, 1))  # blocks of ~4 M values: no full-size copy
    worst, smallest, lowest = 0.0, np.inf, np.inf
    worst_value = 0.0
    for i in range(0, flat.shape[0], step):
        block = np.asarray(flat[i : i + step, c0:c1], dtype=np.float64)
        if not np.all(np.isfinite(block)):
            raise ValueError("the data contain NaN or infinite values; smart_nmf fits counts")
        lowest = min(lowest, float(block.min()))
        frac = np.abs(block - np.round(block))
        j = int(np.argmax(frac))
        if frac.flat[j] > worst:
            worst, worst_value = float(frac.flat[j]), float(block.flat[j])
        pos = block[block > 0]
        if pos.size:
            smallest = min(smallest, float(pos.min()))
    if lowest < 0:
        raise ValueError(
            f"the data contain negative values (min {lowest:.4g}); smart_nmf fits "
            "counts ≥ 0: fit the raw map, not a background-subtracted or centred one"
        )
    if worst > 1e-6:
        warnings.warn(
            f"the data are not integer counts (e.g. a value of {worst_value:.4g}, smallest "
            f"nonzero {smallest:.4g}): smart_nmf's Poisson model and its error bars assume raw "
            "counts. If the map was scaled or normalised (e.g. divided by the live time or by "
            "1000), fit the raw counts; the fit goes on with the values as given",
            ImplausibleInputWarning,
            stacklevel=4,
        )


class _InterruptWatch:
    """Remembers a Ctrl-C during the fit, even one whose ``KeyboardInterrupt`` was swallowed.

    Numba's compiler (first call of a kernel) runs Python callbacks from C and ignores the
    exceptions they raise, so a Ctrl-C that lands there is lost and the fit would run to its
    end. While the fit runs in the main thread under Python's default SIGINT handler, this
    handler records the signal (then raises as usual), and the callback made by :meth:`wrap`
    raises ``KeyboardInterrupt`` at the next iteration if the signal was seen: the fit stops
    and its last iterate is stored with ``stop_reason="interrupted"``.
    """

    def __init__(self) -> None:
        self.hit = False
        self._installed = False

    def _handler(self, signum, frame):
        self.hit = True
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptWatch:
        import signal
        import threading

        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            import signal

            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._installed = False

    def wrap(self, callback):
        """A callback that raises once a Ctrl-C was seen, then calls ``callback`` (if any)."""

        def watched(estimator, iteration, W, H):
            if self.hit:
                raise KeyboardInterrupt
            return None if callback is None else callback(estimator, iteration, W, H)

        return watched


class _ChainedCallback:
    """The user's callback, then the absorption refresher (whose new G wins)."""

    def __init__(self, user, refresher) -> None:
        self.user, self.refresher = user, refresher

    def __call__(self, estimator, iteration: int, W, H):
        ret = self.user(estimator, iteration, W, H)
        G = self.refresher(estimator, iteration, W, H)
        return ret if G is None else G


class _AbsorptionRefresh:
    """Callback of the estimator: per-phase G from the current W, every ``every`` iterations."""

    def __init__(self, model, priors, every: int) -> None:
        self.model, self.priors, self.every = model, priors, every

    def G_for(self, W: np.ndarray) -> np.ndarray:
        G3 = self.model.G_for_phases(self.priors.true_W(W))
        return self.priors.phase_G(G3)

    def __call__(self, estimator, iteration: int, W, H):
        if iteration == 0 or iteration % self.every:
            return None
        return self.G_for(W)


def physics_estimator(model, priors, k: int, params: dict, absorption_every: int = 10,
                      wrap=None):  # fmt: skip
    """The :class:`esmpy_hs.nmf.SmartNMF` of ``k`` phases on the physics ``model``.

    G is the model's, through the phase ``priors`` (:func:`._priors.parse_phases`); on an
    absorbing specimen every phase starts from the average absorber and its absorption is
    refreshed from its composition every ``absorption_every`` iterations (``params["callback"]``
    is set, chained after a callback of the user's, so ``params`` is modified). ``wrap``, if
    given, wraps the final callback (``params["callback"] = wrap(callback)``). ``params`` are
    the other SmartNMF parameters.
    """
    from esmpy_hs.nmf import SmartNMF

    refresher = _AbsorptionRefresh(model, priors, absorption_every)
    G = model.G
    if model.specimen.absorbs or priors.transforms:
        G = refresher.G_for(np.ones((len(model.labels), int(k))))  # start: average absorber
        if model.specimen.absorbs:
            user = params.get("callback")
            if user is not None and not callable(user):
                raise ValueError(f"callback must be callable, got {user!r}")
            # the user's callback is still called; the refresher's new G wins on its iterations
            params["callback"] = refresher if user is None else _ChainedCallback(user, refresher)
    if wrap is not None:
        params["callback"] = wrap(params.get("callback"))
    return SmartNMF(G, int(k), simplex_rows=model.simplex_mask, **params)


def _check_estimator_params(params: dict, grid: tuple[int, ...] | None) -> None:
    """Check the SmartNMF keyword arguments of a smart_nmf call before any work is done.

    ``grid`` is the pixel grid the call will pass as ``shape_2d`` (:func:`_navigation_grid`),
    part of what some options are checked against (``spectra_from="blocks"`` needs one).
    """
    from esmpy_hs.nmf import SmartNMF
    from esmpy_hs.nmf._plan import PARAMETERS, validate_params

    # set by smart_nmf from the physics model and the signal, never by the caller
    reserved = ("G", "n_components", "simplex_rows")
    unknown = sorted(set(params) - set(PARAMETERS) | set(params) & set(reserved))
    if unknown:
        valid = ", ".join(n for n in PARAMETERS if n not in reserved)
        raise TypeError(
            f"decomposition(algorithm='smart_nmf') got unexpected keyword argument(s) "
            f"{', '.join(unknown)}; the model options are documented in "
            f"EDSespm.decomposition, the estimator options are: {valid}"
        )
    validate_params({**SmartNMF().get_params(), "shape_2d": grid, **params})


def smart_nmf(
    signal,
    output_dimension,
    *,
    elements=None,
    stray_elements=(),
    split=None,
    continuum: bool = True,
    energy_range=None,
    detector=None,
    phases=None,
    absorption_every: int = 10,
    vacancy_transfer: bool = True,
    persist: str | None = None,
    client=None,
    calibrate="auto",
    print_info: bool = True,
    mu_check: Callable | None = None,
    **estimator_params,
) -> dict:
    """Fit ``signal`` with SmartNMF and store the results; see :meth:`EDSespm.decomposition`.

    ``mu_check``: called as ``mu_check(signal, model, k, channels, grid, params,
    absorption_every, print_info, compact)`` (``compact``: the fitted channels' counts,
    :class:`esmpy_hs.nmf._data.CompactCounts`) after the model is built, for an in-memory
    signal; a number it returns is the fit's μ (:func:`._prior_cv.auto_mu`, which the signal's
    ``decomposition`` passes).
    """
    k = output_dimension
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(
            f"algorithm='smart_nmf' needs output_dimension, the number of phases (an integer ≥ 1), "
            f"got {k!r}"
        )
    _check_hyperspy_keywords(estimator_params)
    _check_client(client)
    lazy = bool(getattr(signal, "_lazy", False))
    lazy_kw = {key: v for key, v in (("persist", persist), ("client", client)) if v is not None}
    if lazy_kw and not lazy:
        raise ValueError(
            f"{', '.join(lazy_kw)} apply to lazy signals only (s.as_lazy() or "
            "hs.load(..., lazy=True)); this signal is in memory"
        )
    if isinstance(absorption_every, bool) or not isinstance(absorption_every, numbers.Integral) \
            or absorption_every < 1:  # fmt: skip
        raise ValueError(f"absorption_every must be an integer ≥ 1, got {absorption_every!r}")
    _check_estimator_params(estimator_params, _navigation_grid(signal))
    if lazy and estimator_params.get("smoothing") == "model":
        raise ValueError(
            "smoothing='model' is built for in-memory fits: s.compute() first, or use "
            "smoothing='shares' for a lazy (chunked) fit"
        )
    # from here on a Ctrl-C is remembered even where a library swallows it (numba compiling a
    # kernel of the calibration or of the fit): the fit then stops at its next iteration
    watch = _InterruptWatch()
    with watch:
        from esmpy_hs.signals._calibration import calibrate_signal, report, summed_spectrum

        if isinstance(elements, str) and elements == "auto":
            from esmpy_hs.signals._identify import auto_elements

            elements, stray_elements = auto_elements(signal, stray_elements, energy_range,
                                                     detector, print_info)  # fmt: skip
        acq = read_acquisition(signal, elements)
        fitted = fit_channels(acq.axis, acq.beam_energy, energy_range)
        check_counts(signal.data, *fitted)
        from esmpy_hs.nmf import SmartNMF

        dtype = estimator_params.get("dtype", SmartNMF(None, int(k)).dtype)  # the fit's
        opened = None
        if lazy:  # one read of the file: the fit's chunks and the summed spectrum together
            from esmpy_hs.signals._lazy import open_source

            opened = open_source(signal.data, signal.axes_manager.navigation_dimension,
                                 fitted, dtype, persist, client)  # fmt: skip
        # one pass over the map for both the calibration and the model check after the fit
        summed = summed_spectrum(signal) if opened is None else opened[1]
        calibration = calibrate_signal(
            signal, calibrate, elements=elements, stray_elements=stray_elements,
            energy_range=energy_range, detector=detector, vacancy_transfer=vacancy_transfer,
            acquisition=acq, summed=summed,
        )  # fmt: skip
        model, (c0, c1), acq = build_model(
            signal, elements=elements, stray_elements=stray_elements, split=split,
            continuum=continuum, energy_range=energy_range, detector=detector,
            vacancy_transfer=vacancy_transfer, calibration=calibration, acquisition=acq,
        )  # fmt: skip
        for note in acq.notices:
            if print_info:
                print(f"smart_nmf: {note}")
            _logger.info(note)
        if int(k) > len(model.labels):
            raise ValueError(
                f"output_dimension={k} phases is more than the {len(model.labels)} columns of the "
                f"physics model ({', '.join(model.labels)}) can tell apart: use k ≤ "
                f"{len(model.labels)}, or add the missing elements with s.add_elements([...])"
            )
        if not lazy:
            _check_counts_in_range(signal, summed, c0, c1, model)
        report(calibration, print_info)

        priors = parse_phases(phases, int(k), model)
        params = dict(estimator_params)
        if priors.needs_W_simplex:
            if params.get("simplex", "W") != "W":
                raise ValueError(
                    "phases with partial compositions (fractions summing to < 1) fix atomic "
                    "fractions in W, which needs simplex='W'; give the complete composition of the "
                    "phase (fractions summing to 1) to keep simplex='H'"
                )
            params["simplex"] = "W"
        if priors.fixed_W is not None:
            params["fixed_W"] = priors.fixed_W
        params.setdefault("shape_2d", _navigation_grid(signal))
        params.setdefault("progress", print_info)
        nav_dim = signal.axes_manager.navigation_dimension
        data = signal.data
        compact = None
        if not lazy:
            from esmpy_hs.nmf._data import as_compact

            X = data.reshape(-1, data.shape[-1]) if nav_dim else data.reshape(1, -1)
            # compacted here, not in the estimator, so that the check of the prior and the
            # model check's per-phase sums read the fit's nonzeros instead of the whole array
            # again (0.28 s → 0.01 s at 512² × 4096, 1 count/px)
            compact = as_compact(X[:, c0:c1], float_dtype=np.dtype(dtype))
        def estimator_for(p):
            return physics_estimator(model, priors, int(k), p, absorption_every,
                                     wrap=watch.wrap)  # fmt: skip

        def check_mu(p):
            return mu_check(signal, model, int(k), (c0, c1), p["shape_2d"], p,
                            absorption_every, print_info, compact)  # fmt: skip

        _forget_smoothing_choice(signal)
        mu_checked = False
        if mu_check is not None and compact is not None and priors.fixed_W is None \
                and not priors.needs_W_simplex:  # fmt: skip
            # every phase present almost everywhere? then the held-out counts choose μ
            mu = check_mu(params)
            if mu is not None:
                params["mu"] = mu
                mu_checked = True

        estimator = estimator_for(params)
        if lazy:
            # chunk by chunk, never computing the whole array (see esmpy_hs.nmf._chunked)
            from esmpy_hs.signals._lazy import unfold

            X = unfold(data, nav_dim, c0, c1)
            if opened is not None and (c0, c1) != tuple(fitted):  # pragma: no cover
                raise RuntimeError("the model's channels differ from those read")
            loadings = estimator.fit_transform(X if opened is None else opened[0], **lazy_kw)
        else:
            X = compact
            # a keyboard interrupt stops the estimator, which keeps its last iterate: stored
            loadings = estimator.fit_transform(X)
            if mu_checked and "smoothing" not in estimator_params \
                    and estimator.stop_reason_ != "interrupted" \
                    and estimator.spectra_from_ == "pixels":  # fmt: skip
                # the same mixed map: fitted again with the smoothing of the model's counts,
                # the fit whose model the counts prefer is kept
                def fit_with(p):
                    est = estimator_for(p)
                    return est, est.fit_transform(compact)

                estimator, loadings, params = choose_smoothing(
                    signal, (estimator, loadings, params), compact, fit_with, check_mu,
                    print_info,
                )  # fmt: skip
    W_param = estimator.W_
    W_true = priors.true_W(W_param)
    factors = np.zeros((data.shape[-1], int(k)))
    factors[c0:c1] = estimator.components_.T
    check = None  # an interrupted fit is not checked: the user asked it to stop
    if estimator.stop_reason_ != "interrupted":
        check = _check(signal, estimator, loadings, model, X, summed, (c0, c1), priors.names,
                       print_info)  # fmt: skip
    _store(signal, estimator, factors, loadings, W_true, model, priors, (c0, c1), params,
           calibration, check)  # fmt: skip
    if estimator.stop_reason_ != "interrupted":
        _warn_traded(read_record(signal))
    if print_info:
        print(
            f"smart_nmf: {int(k)} phases, {len(model.labels)} columns of G "
            f"({', '.join(model.labels)}), channels {c0}–{c1 - 1} "
            f"({model.energies[0]:.3f}–{model.energies[-1]:.3f} keV), "
            f"{estimator.n_iter_} iterations ({estimator.stop_reason_}); λ = "
            f"{estimator.lambda_L_:.3g}, spectra from "
            f"{'binned blocks (low dose)' if estimator.spectra_from_ == 'blocks' else 'pixels'}"
            f"{', smoothing of the model counts' if estimator.smoothing_ == 'model' else ''}"
        )
        if params.get("smoothing") == "model" and estimator.smoothing_ != "model":
            print("smart_nmf: smoothing='model' asked, the spectra held from the binned blocks: "
                  "nothing to remix, the shares' Laplacian was used")  # fmt: skip
        if getattr(estimator, "init_note_", ""):
            print(f"smart_nmf: {estimator.init_note_}")
        if estimator.stop_reason_ == "interrupted":
            print(
                f"smart_nmf: interrupted after {estimator.n_iter_} iterations; the last iterate "
                "is stored (metadata.SmartNMF.stop_reason = 'interrupted')"
            )
    return {"estimator": estimator, "model": model, "calibration": calibration}


def _check(signal, estimator, loadings, model, X, summed, channels, names, print_info):
    """The model check of the fit (:mod:`._model_check`): its record entry, or None."""
    from esmpy_hs._learning_results import as_numpy
    from esmpy_hs.nmf._blas import one_blas_thread
    from esmpy_hs.signals._identify import summed_by_labels
    from esmpy_hs.signals._model_check import run_check

    c0, c1 = channels
    H = as_numpy(loadings).astype(np.float64)
    S = np.asarray(estimator.components_, dtype=np.float64)  # (k, channels)
    full = summed  # the map's summed spectrum, read once before the calibration
    data_sum = full[c0:c1]
    phase = {"phase_names": list(names)}  # a map's not-detected elements: for every phase
    t_pass = 0.0
    if not hasattr(X, "compute") and H.shape[0] > 1:  # in memory: the pixels of each phase too
        t0 = time.perf_counter()
        # one pass over the data: the pixels where each phase dominates, and those where it
        # is (almost) pure (for the listed elements' presence test)
        k = H.shape[1]
        dom = np.argmax(H, axis=1)
        pure = _pure_labels(H)
        with one_blas_thread():  # small products: BLAS threads right after the fit's
            # compiled threads cost more than they give (0.15 s against 0.01 s at 64 × 64)
            (phase_data, pure_data), (pixels, pure_pixels) = summed_by_labels(
                X, [dom, pure], [k, k + 1])
        phase_model = np.stack([H[dom == j].sum(axis=0) @ S for j in range(k)])
        parts = np.stack([H[pure == j].sum(axis=0) for j in range(k)])[:, :, None] * S
        phase = {"phase_data": phase_data, "phase_model": phase_model,
                 "phase_names": list(names), "phase_pixels": pixels,
                 "pure": (pure_data[:k], pure_pixels[:k], parts)}  # fmt: skip
        t_pass = time.perf_counter() - t0
    check = run_check(model, data_sum, H.sum(axis=0) @ S, print_info, beyond=full[c1:], **phase)
    if check is not None:  # the pass over the data is the check's too
        check["seconds"] += t_pass
    return check


def _pure_labels(H: np.ndarray) -> np.ndarray:
    """(pixels,) the phase that holds ≥ ``PURE_LEVEL`` of each pixel's abundance, or k where
    none does: each phase's (almost) pure pixels, for the test of the listed elements'
    presence per phase (a particle that is never pure has few and is not tested on its own;
    the pixels where the matrix merely dominates hold the particles seen through it)."""
    from esmpy_hs.physics.composition import PURE_LEVEL

    share = _pixel_shares(H)
    return np.where(share.max(axis=1) >= PURE_LEVEL, np.argmax(share, axis=1), H.shape[1])


def _pixel_shares(loadings):
    """Loadings (pixels × k, NumPy or dask) normalised per pixel to shares of the pixel's
    abundance; a pixel with no abundance keeps its zeros."""
    total = loadings.sum(axis=1, keepdims=True)
    return loadings / (total + (total <= 0))


def largest_share(loadings) -> np.ndarray:
    """(k,) the largest share of a pixel's abundance each phase reaches (loadings pixels × k,
    NumPy or dask); pixels with no abundance do not count."""
    return np.asarray(_pixel_shares(loadings).max(axis=0), dtype=np.float64)


def pixel_counts(loadings, pure_counts: np.ndarray, q: float = 99.0) -> float:
    """The ``q``-th percentile over pixels of the fitted model's counts (loadings pixels × k,
    NumPy or dask; ``pure_counts`` (k,) the counts of a pure pixel of each phase)."""
    from esmpy_hs._learning_results import as_numpy

    totals = as_numpy(loadings @ np.asarray(pure_counts, dtype=np.float64))
    return float(np.percentile(totals, q)) if totals.size else 0.0


class TradedPhaseWarning(UserWarning):
    """A phase holds almost none of the abundance but a share of the counts: the fit traded its
    abundance against the scale of its spectrum, so its composition means nothing and the other
    phases' compositions lack its counts."""


def _warn_traded(record) -> None:
    """Warn about the phases of :func:`esmpy_hs.physics.composition.traded_phases`, in the
    words of the table (:func:`esmpy_hs.physics.composition.traded_note`)."""
    from esmpy_hs.physics.composition import traded_note, traded_phases

    try:
        counts = record.quantification().counts.sum(axis=0)  # element counts per phase
    except ValueError:  # no element lines: nothing to quantify, nothing to say
        return
    traded = np.flatnonzero(traded_phases(record.H_sums, counts))
    if traded.size == 0:
        return
    share = record.H_sums / max(float(record.H_sums.sum()), 1e-300)
    count_share = counts / max(float(counts.sum()), 1e-300)
    pure = record.pure_counts
    parts = [f"{record.phase_names[j]} " + traded_note(share[j], count_share[j],
                                                        None if pure is None else pure[j],
                                                        record.pixel_counts)
             for j in traded]  # fmt: skip
    warnings.warn(
        "; ".join(parts) + ". Its composition means nothing. The phases it stands "
        "for may not be separable in this map (e.g. particles that always occur together): fit "
        "one phase fewer, or give a known composition with phases=...; if every phase is "
        "present almost everywhere (a smooth mixture), the sparsity prior may be wrong for this "
        "map: s.estimate_mu(k) asks the counts. See docs/choosing.rst, 'A phase that trades "
        "abundance for scale'",
        TradedPhaseWarning, stacklevel=4,
    )


def _store(signal, estimator, factors, loadings, W, model, priors, channels, params,
           calibration=None, check=None) -> None:  # fmt: skip
    pure = np.asarray(estimator.components_, dtype=np.float64).sum(axis=1)
    lr = signal.learning_results
    lr.factors = factors
    lr.loadings = loadings
    lr.explained_variance = None
    lr.explained_variance_ratio = None
    lr.number_significant_components = None
    lr.decomposition_algorithm = "smart_nmf"
    lr.poissonian_noise_normalized = False
    lr.output_dimension = factors.shape[1]
    lr.unfolded = False
    lr.centre = None
    lr.mean = None
    lr.unmixing_matrix = None
    lr.bss_algorithm = None
    lr.bss_factors = None
    lr.bss_loadings = None
    lr.navigation_mask = None
    lr.signal_mask = None
    write_record(signal, FitRecord(
        W=np.asarray(W, dtype=np.float64),
        H_sums=np.asarray(loadings.sum(axis=0), dtype=np.float64),
        largest_share=largest_share(loadings),
        pure_counts=pure,
        pixel_counts=pixel_counts(loadings, pure),
        labels=list(model.labels),
        phase_names=list(priors.names),
        model=model.to_dict(),
        channels=(int(channels[0]), int(channels[1])),
        parameters=params,
        n_iter=int(estimator.n_iter_),
        stop_reason=str(estimator.stop_reason_),
        init_note=str(getattr(estimator, "init_note_", "")),
        lambda_L=float(estimator.lambda_L_),
        spectra_from=str(estimator.spectra_from_),
        loss_history=np.asarray(estimator.loss_history_, dtype=np.float64),
        data_shape=tuple(int(n) for n in signal.data.shape),
        calibration=None if calibration is None else calibration.to_dict(),
        model_check=check,
    ))  # fmt: skip


def quantify(signal, family: str | None = None):
    """The phase compositions of the last smart_nmf fit stored in ``signal.metadata``."""
    record = check_current(signal)
    if not record.model.get("elements", True):
        raise ValueError(
            "this smart_nmf fit modelled no element lines (only continuum or stray lines): "
            "nothing to quantify; set the specimen's elements and fit again"
        )
    return record.quantification(family)


def fit_arrays(signal) -> dict[str, Any]:
    """What element maps and region compositions need from the last smart_nmf fit.

    Returns
    -------
    dict
        ``W`` ((columns, k) array), ``H`` ((pixels, k) NumPy loadings, row-major pixels),
        ``model`` (:class:`esmpy_hs.physics.PhysicsModel`), ``phase_names``.
    """
    from esmpy_hs._learning_results import as_numpy

    record = check_current(signal)
    loadings = getattr(signal.learning_results, "loadings", None)
    if loadings is None:
        raise ValueError(NO_FIT)
    H = as_numpy(loadings).astype(np.float64)
    if H.ndim != 2 or H.shape[1] != record.k:
        raise ValueError(
            f"the loadings ({H.shape}) do not match the smart_nmf fit ({record.k} phases): "
            "was another decomposition run after it? Run smart_nmf again"
        )
    return {
        "W": record.W,
        "H": H,
        "model": record.physics_model(),
        "phase_names": record.phase_names,
    }

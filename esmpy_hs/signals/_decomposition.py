"""``decomposition(algorithm="smart_nmf")`` for EDS_ESMPY signals.

The steps, in order: read the metadata (:mod:`._metadata`), choose the channels to fit, build G
(:func:`esmpy_hs.physics.build_G`), translate phase priors (:mod:`._priors`), fit
:class:`esmpy_hs.nmf.SmartNMF`, then write HyperSpy's ``learning_results`` and the metadata node
``SmartNMF`` that :meth:`EDSespm.quantify_phases` reads (also after save/load).

Lazy signals take the same steps; only the fit differs: the fitted channels of the dask array are
unfolded to pixels × channels without computing them (:mod:`._lazy`) and fitted chunk by chunk
(:mod:`esmpy_hs.nmf._chunked`, options ``persist`` and ``client``); the loadings come back as a
NumPy array.

What is stored in ``metadata.SmartNMF``
----------------------------------------
``W``
    (columns × k) array: element rows proportional to atoms (``W[e, k]`` counts per pixel of pure
    phase k per unit of G's column e), then stray-line and continuum rows.
``H_sums``
    (k,) Σ over pixels of each abundance map.
``labels``
    G's column labels, in W's row order.
``phase_names``
    One name per phase.
``model``
    JSON text of :meth:`esmpy_hs.physics.PhysicsModel.to_dict` (rebuilds G exactly).
``channels``
    ``[first, stop)``: the channels that were fitted; factors are 0 outside.
``parameters``
    JSON text of the estimator settings.
``n_iter``, ``stop_reason``, ``loss_history``
    How the fit ended.
``calibration``
    JSON text of :meth:`esmpy_hs.physics.calibration.Calibration.to_dict` (offset shift in eV,
    gain, width law, FWHM at C Kα, O Kα and Mn Kα with uncertainties), or ``null`` with
    ``calibrate=False``. ``model`` already holds the calibrated axis and width law.
"""

from __future__ import annotations

import json
import logging
import numbers
from typing import Any

import numpy as np

from esmpy_hs.signals._metadata import read_acquisition
from esmpy_hs.signals._priors import parse_phases

_logger = logging.getLogger(__name__)

#: Default low-energy cut (keV): the detector noise peak ends near 0.1–0.15 keV.
DEFAULT_LOW_CUT_KEV = 0.25

#: Metadata node holding the results that quantification needs.
NODE = "SmartNMF"

# keyword arguments that describe the physics model rather than the estimator
_MODEL_KEYS = ("elements", "stray_elements", "split", "continuum", "energy_range", "detector",
               "phases", "absorption_every", "vacancy_transfer")  # fmt: skip
# keyword arguments of the chunked fit of lazy signals (esmpy_hs.nmf._chunked)
_LAZY_KEYS = ("persist", "client")


def fit_channels(axis, beam_energy: float, energy_range=None) -> tuple[int, int]:
    """The channel range ``[first, stop)`` to fit.

    Channels at or below ``energy_range[0]`` (default :data:`DEFAULT_LOW_CUT_KEV`, and always
    above 0 keV) and at or above ``energy_range[1]`` (default: the beam energy) are left out.
    """
    low, high = (None, None) if energy_range is None else energy_range
    low = DEFAULT_LOW_CUT_KEV if low is None else float(low)
    high = beam_energy if high is None else min(float(high), beam_energy)
    e = axis.energies
    keep = np.nonzero((e > max(low, 0.0)) & (e < high))[0]
    if keep.size < 2:
        raise ValueError(
            f"no channels to fit between {max(low, 0.0):.3g} and {high:.3g} keV on an axis from "
            f"{e[0]:.3g} to {e[-1]:.3g} keV; check the energy axis (offset, scale, units) "
            "or energy_range"
        )
    return int(keep[0]), int(keep[-1]) + 1


def _detector(acq, detector):
    from esmpy_hs.physics import Detector

    if isinstance(detector, Detector):
        return detector
    spec = acq.efficiency if detector is None else detector
    kwargs: dict[str, Any] = {"resolution_mnka": acq.energy_resolution_MnKa}
    if spec is None:
        pass
    elif isinstance(spec, str):
        kwargs["window"] = spec
    elif isinstance(spec, dict) and {"energy", "efficiency"} <= set(spec):
        kwargs["efficiency_curve"] = (np.asarray(spec["energy"]), np.asarray(spec["efficiency"]))
    else:
        raise ValueError(
            "the detector efficiency must be a preset name (see "
            "esmpy_hs.physics.WINDOW_PRESETS) or {'energy': [...keV], 'efficiency': [...]}, "
            f"got {spec!r}"
        )
    return Detector(**kwargs)


def build_model(signal, *, elements=None, stray_elements=(), split=None, continuum=True,
                energy_range=None, detector=None, vacancy_transfer=True,
                calibration=None):  # fmt: skip
    """Build the physics model of ``signal`` on its fitted channels.

    ``calibration`` (an :class:`esmpy_hs.physics.calibration.Calibration`) replaces the recorded
    energy axis and width law in the model; the fitted channels stay those of the recorded axis.

    Returns
    -------
    model : esmpy_hs.physics.PhysicsModel
    channels : tuple of int
        ``[first, stop)`` on the signal axis.
    acquisition : Acquisition
    """
    from esmpy_hs.physics import EnergyAxis, Specimen, build_G

    acq = read_acquisition(signal, elements)
    stray = tuple(stray_elements or ())
    specimen_elements = tuple(e for e in acq.elements if e not in stray)
    c0, c1 = fit_channels(acq.axis, acq.beam_energy, energy_range)
    full = acq.axis if calibration is None else calibration.axis(acq.axis)
    axis = EnergyAxis(full.offset + c0 * full.scale, full.scale, c1 - c0)
    det = _detector(acq, detector)
    if calibration is not None:
        det = calibration.detector(det)
    specimen = Specimen(
        thickness=acq.thickness, density=acq.density, take_off_angle=acq.take_off_angle
    )
    model = build_G(
        axis,
        acq.beam_energy,
        specimen_elements,
        detector=det,
        specimen=specimen,
        split=split,
        stray_elements=stray,
        continuum=continuum,
        vacancy_transfer=vacancy_transfer,
    )
    return model, (c0, c1), acq


def _navigation_grid(signal) -> tuple[int, ...] | None:
    """Pixel grid for the Laplacian, in the row-major order of the unfolded data."""
    shape = tuple(int(n) for n in signal.data.shape[: signal.axes_manager.navigation_dimension])
    if len(shape) in (1, 2):
        return shape
    return None


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


def smart_nmf(signal, output_dimension, *, print_info: bool = True, **kwargs) -> dict:
    """Fit ``signal`` with SmartNMF and store the results; see :meth:`EDSespm.decomposition`."""
    from esmpy_hs.nmf import SmartNMF

    k = output_dimension
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(
            f"algorithm='smart_nmf' needs output_dimension, the number of phases (an integer ≥ 1), "
            f"got {k!r}"
        )
    lazy_kw = {key: kwargs.pop(key) for key in _LAZY_KEYS if key in kwargs}
    lazy = bool(getattr(signal, "_lazy", False))
    if lazy_kw and not lazy:
        raise ValueError(
            f"{', '.join(lazy_kw)} apply to lazy signals only (s.as_lazy() or "
            "hs.load(..., lazy=True)); this signal is in memory"
        )
    model_kw = {key: kwargs.pop(key) for key in _MODEL_KEYS if key in kwargs}
    phases = model_kw.pop("phases", None)
    absorption_every = int(model_kw.pop("absorption_every", 10))
    if absorption_every < 1:
        raise ValueError(f"absorption_every must be ≥ 1, got {absorption_every}")
    calibrate = kwargs.pop("calibrate", "auto")
    from esmpy_hs.signals._calibration import calibrate_signal, report

    model_options = {k: v for k, v in model_kw.items() if k not in ("split", "continuum")}
    calibration = calibrate_signal(signal, calibrate, **model_options)
    model, (c0, c1), acq = build_model(signal, calibration=calibration, **model_kw)
    for note in acq.notices:
        if print_info:
            print(f"smart_nmf: {note}")
        _logger.info(note)
    report(calibration, print_info)

    priors = parse_phases(phases, int(k), model)
    params = dict(kwargs)
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

    absorbs = model.specimen.absorbs
    refresher = _AbsorptionRefresh(model, priors, absorption_every)
    G = model.G
    if absorbs or priors.transforms:
        G = refresher.G_for(np.ones((len(model.labels), int(k))))  # start: average absorber
        if absorbs:
            params["callback"] = refresher
    estimator = SmartNMF(G, int(k), simplex_rows=model.simplex_mask, **params)

    nav_dim = signal.axes_manager.navigation_dimension
    data = signal.data
    if lazy:
        # chunk by chunk, never computing the whole array (see esmpy_hs.nmf._chunked)
        from esmpy_hs.signals._lazy import unfold

        X = unfold(data, nav_dim, c0, c1)
        loadings = estimator.fit_transform(X, **lazy_kw)
    else:
        X = data.reshape(-1, data.shape[-1]) if nav_dim else data.reshape(1, -1)
        X = X[:, c0:c1]
        # a keyboard interrupt stops the estimator, which keeps its last iterate: stored below
        loadings = estimator.fit_transform(X)
    W_param = estimator.W_
    W_true = priors.true_W(W_param)
    factors = np.zeros((data.shape[-1], int(k)))
    factors[c0:c1] = estimator.components_.T
    _store(signal, estimator, factors, loadings, W_true, model, priors, (c0, c1), params,
           calibration)  # fmt: skip
    if print_info:
        print(
            f"smart_nmf: {int(k)} phases, {len(model.labels)} columns of G "
            f"({', '.join(model.labels)}), channels {c0}–{c1 - 1} "
            f"({model.energies[0]:.3f}–{model.energies[-1]:.3f} keV), "
            f"{estimator.n_iter_} iterations ({estimator.stop_reason_}); λ = "
            f"{estimator.lambda_L_:.3g}, spectra from "
            f"{'binned blocks (low dose)' if estimator.spectra_from_ == 'blocks' else 'pixels'}"
        )
        if getattr(estimator, "init_note_", ""):
            print(f"smart_nmf: {estimator.init_note_}")
    return {"estimator": estimator, "model": model, "calibration": calibration}


def _jsonable(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        if key == "callback" or callable(value):
            continue
        if isinstance(value, np.ndarray):
            value = np.where(np.isnan(value), None, value).tolist() if value.dtype.kind == "f" \
                else value.tolist()  # fmt: skip
        elif isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except TypeError:
            value = repr(value)
        out[key] = value
    return out


def _store(signal, estimator, factors, loadings, W, model, priors, channels, params,
           calibration=None) -> None:  # fmt: skip
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
    node = {
        "W": np.asarray(W, dtype=np.float64),
        "H_sums": np.asarray(loadings.sum(axis=0), dtype=np.float64),
        "labels": list(model.labels),
        "phase_names": list(priors.names),
        "model": json.dumps(model.to_dict()),
        "channels": [int(channels[0]), int(channels[1])],
        "parameters": json.dumps(_jsonable(params)),
        "n_iter": int(estimator.n_iter_),
        "stop_reason": str(estimator.stop_reason_),
        "init_note": str(getattr(estimator, "init_note_", "")),
        "lambda_L": float(estimator.lambda_L_),
        "spectra_from": str(estimator.spectra_from_),
        "loss_history": np.asarray(estimator.loss_history_, dtype=np.float64),
        "calibration": json.dumps(None if calibration is None else calibration.to_dict()),
    }
    signal.metadata.set_item(NODE, node)


def quantify(signal, family: str | None = None):
    """The phase compositions of the last smart_nmf fit stored in ``signal.metadata``."""
    import dataclasses

    from esmpy_hs.physics import PhysicsModel

    node = signal.metadata.get_item(NODE, None)
    if node is None:
        raise ValueError(
            "no smart_nmf result on this signal: run "
            "s.decomposition(algorithm='smart_nmf', output_dimension=k) first"
        )
    model = PhysicsModel.from_dict(json.loads(node.model))
    W = np.asarray(node.W, dtype=np.float64)
    G3 = model.G_for_phases(W) if model.specimen.absorbs else None
    q = model.composition(W, H_sums=np.asarray(node.H_sums), family=family, G=G3)
    return dataclasses.replace(q, phase_names=list(node.phase_names))

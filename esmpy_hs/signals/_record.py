"""The fit record: what a smart_nmf fit leaves in ``metadata.SmartNMF``, written and read here.

Everything that uses a finished fit (``quantify_phases``, ``plot_phases``, the metrics, the
command line) reads it through :func:`read_record`; :func:`write_record` is the one writer. The
node survives ``s.save``/``hs.load`` (HyperSpy stores arrays, numbers, strings and lists; the
physics model and the parameters are JSON text).

What is stored in ``metadata.SmartNMF``
----------------------------------------
``W``
    (columns × k) array: element rows proportional to atoms (``W[e, k]`` counts per pixel of pure
    phase k per unit of G's column e), then stray-line and continuum rows.
``H_sums``
    (k,) Σ over pixels of each abundance map.
``largest_share``
    (k,) the largest share of a pixel's abundance each phase reaches (1 for a phase seen pure
    somewhere); a phase below :data:`esmpy_hs.physics.composition.PURE_LEVEL` is listed as
    never pure in the quantification (absent in records written before it).
``pure_counts``, ``pixel_counts``
    (k,) the counts of a pure pixel of each phase (its spectrum's sum) and the 99th percentile
    of the fitted model's pixel counts, both over the fitted channels: they put a figure on a
    phase that traded its abundance against its spectrum's scale
    (:func:`esmpy_hs.physics.composition.traded_phases`; absent in older records).
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
    How the fit ended (``stop_reason``: ``"converged"``, ``"max_iter"`` or ``"interrupted"``).
``init_note``, ``lambda_L``, ``spectra_from``
    What the fit chose (see :class:`esmpy_hs.nmf.SmartNMF`).
``calibration``
    JSON text of :meth:`esmpy_hs.physics.calibration.Calibration.to_dict` (offset shift in eV,
    gain, width law, FWHM at C Kα, O Kα and Mn Kα with uncertainties), or ``null`` with
    ``calibrate=False``. ``model`` already holds the calibrated axis and width law.
``model_check``
    JSON text of the check of the fit (:mod:`._model_check`): elements whose lines the model
    leaves unexplained, with the summed data and model, and ``listed``: the test of each
    listed element's presence (:func:`._model_check.listed_elements`), whose ``not_detected``
    elements the record's quantification marks; ``null`` when the check did not run
    (records written before it read as ``None``; before the presence test, without
    ``listed``: nothing marked).
``data_shape``
    The shape of ``signal.data`` that was fitted: a cropped or rebinned copy, or a later
    decomposition (``learning_results.decomposition_algorithm`` no longer ``"smart_nmf"``),
    makes :func:`check_current` refuse the stale result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: metadata node of the record
NODE = "SmartNMF"
#: metadata node of the held-out check of μ (:mod:`._prior_cv`); here, beside the fit's own
#: node, because the choice of the smoothing (:mod:`._smoothing_choice`) keeps the one of the
#: fit it keeps
NODE_MU = "SmartNMF_mu"

#: the message of a signal without a smart_nmf fit
NO_FIT = (
    "no smart_nmf result on this signal: run "
    "s.decomposition(algorithm='smart_nmf', output_dimension=k) first"
)


@dataclass(frozen=True)
class FitRecord:
    """A finished smart_nmf fit, as stored on the signal (see the module docstring)."""

    W: np.ndarray
    H_sums: np.ndarray
    labels: list[str]
    phase_names: list[str]
    model: dict[str, Any]
    channels: tuple[int, int]
    parameters: dict[str, Any] = field(default_factory=dict)
    n_iter: int = 0
    stop_reason: str = ""
    init_note: str = ""
    lambda_L: float = float("nan")
    spectra_from: str = ""
    loss_history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    data_shape: tuple[int, ...] | None = None
    calibration: dict[str, Any] | None = None
    model_check: dict[str, Any] | None = None
    largest_share: np.ndarray | None = None
    pure_counts: np.ndarray | None = None
    pixel_counts: float | None = None

    @property
    def k(self) -> int:
        """Number of phases."""
        return int(self.W.shape[1])

    def physics_model(self):
        """The :class:`esmpy_hs.physics.PhysicsModel` of the fit (rebuilt from its JSON)."""
        from esmpy_hs.physics import PhysicsModel

        return PhysicsModel.from_dict(self.model)

    def phase_G(self, model=None) -> np.ndarray:
        """Each phase's G (k × channels × columns), with the absorption of its composition."""
        model = self.physics_model() if model is None else model
        return model.G_for_phases(self.W)

    def quantification(self, family: str | None = None, model=None):
        """The phase compositions (:class:`esmpy_hs.physics.Quantification`), phases whose
        composition means nothing marked as not determined."""
        import dataclasses

        from esmpy_hs.physics.composition import mark_never_pure, mark_undetermined

        model = self.physics_model() if model is None else model
        G3 = self.phase_G(model) if model.specimen.absorbs else None
        q = model.composition(self.W, H_sums=self.H_sums, family=family, G=G3)
        q = dataclasses.replace(q, phase_names=list(self.phase_names))
        q = mark_undetermined(q, self.H_sums, pure_counts=self.pure_counts,
                              pixel_counts=self.pixel_counts)  # fmt: skip
        if self.largest_share is not None:
            q = mark_never_pure(q, self.largest_share)
        listed = (self.model_check or {}).get("listed")  # records before it: no test
        if listed and listed.get("not_detected"):
            from esmpy_hs.physics.composition import mark_not_detected

            q = mark_not_detected(q, listed["not_detected"])
        return q


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


def write_record(signal, record: FitRecord) -> None:
    """Store ``record`` in ``signal.metadata.SmartNMF`` (replacing an earlier one)."""
    node = {
        "W": np.asarray(record.W, dtype=np.float64),
        "H_sums": np.asarray(record.H_sums, dtype=np.float64),
        "labels": list(record.labels),
        "phase_names": list(record.phase_names),
        "model": json.dumps(record.model),
        "channels": [int(record.channels[0]), int(record.channels[1])],
        "parameters": json.dumps(_jsonable(record.parameters)),
        "n_iter": int(record.n_iter),
        "stop_reason": str(record.stop_reason),
        "init_note": str(record.init_note),
        "lambda_L": float(record.lambda_L),
        "spectra_from": str(record.spectra_from),
        "loss_history": np.asarray(record.loss_history, dtype=np.float64),
    }
    node["calibration"] = json.dumps(record.calibration)
    node["model_check"] = json.dumps(record.model_check)
    if record.largest_share is not None:
        node["largest_share"] = np.asarray(record.largest_share, dtype=np.float64)
    if record.pure_counts is not None:
        node["pure_counts"] = np.asarray(record.pure_counts, dtype=np.float64)
    if record.pixel_counts is not None:
        node["pixel_counts"] = float(record.pixel_counts)
    if record.data_shape is not None:
        node["data_shape"] = [int(n) for n in record.data_shape]
    signal.metadata.set_item(NODE, node)


def read_record(signal, *, current: bool = False) -> FitRecord | None:
    """The fit record of ``signal``, or None when it has none.

    ``current=True`` also returns None when the signal's decomposition results are no longer
    those of the fit (another algorithm ran since).
    """
    node = signal.metadata.get_item(NODE, None)
    if node is None:
        return None
    if current:
        lr = getattr(signal, "learning_results", None)
        if getattr(lr, "decomposition_algorithm", None) != "smart_nmf":
            return None
    get = node.get_item
    params = get("parameters", "{}")
    shape = get("data_shape", None)
    calibration = get("calibration", "null")
    check = get("model_check", "null")
    largest = get("largest_share", None)
    pure = get("pure_counts", None)
    pixel = get("pixel_counts", None)
    return FitRecord(
        W=np.asarray(node.W, dtype=np.float64),
        H_sums=np.asarray(node.H_sums, dtype=np.float64),
        labels=[str(v) for v in get("labels", [])],
        phase_names=[str(v) for v in node.phase_names],
        model=json.loads(node.model),
        channels=(int(node.channels[0]), int(node.channels[1])),
        parameters=json.loads(params) if isinstance(params, str) else dict(params),
        n_iter=int(get("n_iter", 0)),
        stop_reason=str(get("stop_reason", "")),
        init_note=str(get("init_note", "")),
        lambda_L=float(get("lambda_L", np.nan)),
        spectra_from=str(get("spectra_from", "")),
        loss_history=np.asarray(get("loss_history", np.zeros(0)), dtype=np.float64),
        data_shape=None if shape is None else tuple(int(n) for n in shape),
        calibration=json.loads(calibration) if isinstance(calibration, str) else None,
        model_check=json.loads(check) if isinstance(check, str) else None,
        largest_share=None if largest is None else np.asarray(largest, dtype=np.float64),
        pure_counts=None if pure is None else np.asarray(pure, dtype=np.float64),
        pixel_counts=None if pixel is None else float(pixel),
    )


def require_record(signal) -> FitRecord:
    """:func:`read_record`, raising a ``ValueError`` that says what to run when there is none."""
    record = read_record(signal)
    if record is None:
        raise ValueError(NO_FIT)
    return record


class StaleResultError(ValueError):
    """The smart_nmf result in the metadata does not describe this signal any more."""


def check_current(signal) -> FitRecord:
    """The fit record, if it is the result of the signal's last decomposition.

    Raises
    ------
    ValueError
        No smart_nmf result.
    StaleResultError
        Another decomposition ran since (its loadings are in ``learning_results``), or the
        signal was cropped or rebinned after the fit.
    """
    record = require_record(signal)
    algo = getattr(getattr(signal, "learning_results", None), "decomposition_algorithm", None)
    if algo is not None and str(algo) != "smart_nmf":
        raise StaleResultError(
            f"the last decomposition of this signal is {algo!r}, not smart_nmf: "
            "learning_results hold its factors and loadings, and metadata.SmartNMF an older "
            "smart_nmf fit. Run s.decomposition(algorithm='smart_nmf', output_dimension=k) "
            "again (or delete the old fit with del s.metadata.SmartNMF)"
        )
    shape = tuple(int(n) for n in signal.data.shape)
    if record.data_shape is not None and record.data_shape != shape:
        raise StaleResultError(
            f"metadata.SmartNMF is the fit of a map of shape {record.data_shape}, "
            f"but this signal has shape {shape} (cropped with inav/isig, or rebinned, after "
            "the fit): run s.decomposition(algorithm='smart_nmf', output_dimension=k) on this "
            "signal"
        )
    return record


def fitted_channels(signal) -> tuple[int, int] | None:
    """``[first, stop)`` of the channels smart_nmf fitted, or None (no fit, or only a
    ``channels`` entry left, e.g. by a user)."""
    ch = signal.metadata.get_item(f"{NODE}.channels", None)
    return None if ch is None else (int(ch[0]), int(ch[1]))

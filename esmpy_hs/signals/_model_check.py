"""The check of a finished smart_nmf fit: counts the model cannot explain.

After every fit, the fitted model's summed spectrum (and, for a map in memory, the summed spectrum
of the pixels where each phase dominates) is compared with the data by the detection core of
:mod:`esmpy_hs.physics.identification`: with the fitted model as a fixed part (free scale ≥ 0)
and the model's own elements free by family with their position and width derivatives (so that
a peak a few eV off — the non-linear axis of a real detector — or a little too wide is no
finding), every other element is tested as a whole line family on top of it. Elements that pass
the test are reported:

* a specimen element whose lines carry at least ``MIN_SHARE`` of the characteristic counts and
  at least ``MIN_UNEXPLAINED`` of the counts of its peak region: one
  :class:`UnexplainedCountsWarning` for the fit, naming the energy, the share of the peak's
  counts that the model leaves unexplained, the line and the call that adds it;
* a likely stray element (grid, FIB, contamination, detector; see
  ``esmpy_hs.physics.identification.STRAY_SOURCES``), or a weaker specimen element: a printed
  note (``print_info``) and the record only.

The other way round, each LISTED element is tested for presence
(:func:`listed_elements`, :mod:`esmpy_hs.physics.presence`): a drop-one likelihood-ratio test
with every listed element's whole line set tied at the tabulated ratios and the continuum's
shape nuisance columns, on the map's summed spectrum and on each phase's (almost) pure pixels.
An element the data do not need is marked in the phase tables (``Quantification.not_detected``:
shown as "—", the phase renormalised without it) and in ``plot_phases``.

The result is stored in ``metadata.SmartNMF.model_check`` and drawn by
:meth:`EDSespm.plot_residuals`. An interrupted fit is not checked (``model_check`` is None). The
check's cost does not grow with the map (one test of the map's summed spectrum and one per
phase; the candidates' columns are kept per energy axis); the figures are in
``docs/validation.rst``.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from esmpy_hs.nmf._blas import one_blas_thread
from esmpy_hs.physics import identification
from esmpy_hs.physics.attenuation import one_openmp_thread
from esmpy_hs.physics.identification import identify

_logger = logging.getLogger("esmpy_hs.signals")

#: a missing specimen element is warned about when its lines carry at least this share of the
#: characteristic counts of the fitted spectrum (it then biases every composition by about as
#: much); weaker findings are recorded and printed only
MIN_SHARE = 0.005

#: ... and when the model leaves at least this share of the counts of its peak region unexplained:
#: a line whose peak the model already explains for the most part is a mismatch of a modelled
#: line (ratios within a family, peak shape), not a missing element
MIN_UNEXPLAINED = 0.25

#: phases dominating fewer pixels than this are not checked on their own
MIN_PIXELS = 16


class UnexplainedCountsWarning(UserWarning):
    """Counts that the fitted model cannot explain match an element it does not have."""


_GREEK = {"a": "α", "b": "β", "g": "γ", "l": "ℓ", "z": "ζ", "n": "η"}


def line_label(name: str) -> str:
    """``"Si Ka1"`` → ``"Si Kα"``."""
    el, _, line = name.partition(" ")
    if len(line) >= 2 and line[0] in "KLM" and line[1] in _GREEK:
        return f"{el} {line[0]}{_GREEK[line[1]]}"
    return name


def _findings(result, where: str) -> list[dict]:
    out = []
    for e in result.present:
        out.append({
            "element": e.element, "where": where, "energy_keV": float(e.energy),
            "line": line_label(e.line), "unexplained_fraction": float(e.peak_fraction),
            "counts": float(e.counts), "share": float(e.share), "statistic": float(e.statistic),
            "threshold": float(result.threshold), "source": e.source,
            "lines": [line_label(x) for x in e.lines],
        })  # fmt: skip
    return out


def check_model(model, data_sum: np.ndarray, model_sum: np.ndarray, *, phase_data=None,
                phase_model=None, phase_names=(), phase_pixels=None,
                beyond: np.ndarray | None = None, pure=None) -> dict:  # fmt: skip
    """Test the fitted model against the data; returns the record entry.

    Parameters
    ----------
    model : esmpy_hs.physics.PhysicsModel
        The fit's model (calibrated axis and detector, its elements and strays).
    data_sum, model_sum : numpy.ndarray
        Summed data and summed fitted model over the fitted channels (counts).
    phase_data, phase_model : numpy.ndarray, optional
        (k, channels): the same over the pixels where each phase dominates.
    phase_names : sequence of str
    phase_pixels : sequence of int
        Pixels where each phase dominates.
    pure : tuple, optional
        ``(data, pixels, parts)``: the data summed over the pixels where each phase holds
        ≥ ``PURE_LEVEL`` of the abundance (k, channels), their number (k,), and the fitted
        model's part of each phase i there (k, k, channels); for the test of the listed
        elements' presence per phase (:func:`listed_elements`).
    beyond : numpy.ndarray, optional
        The summed data in the channels above the fitted ones (counts): an element is not named
        for a peak when its lines there, which the fit did not see, lack the counts that peak
        predicts (``beyond`` of :func:`esmpy_hs.physics.identification.identify`; the map's
        channels stand for each phase's too, as they hold its pixels' counts).

    Returns
    -------
    dict
        ``findings`` (list of dicts, one per element and place), ``warned`` (elements in the
        warning), ``listed`` (the test of the listed elements' presence,
        :func:`listed_elements`), ``seconds``, ``data`` and ``model`` (the summed spectra,
        lists).
    """
    # one BLAS thread and one OpenMP thread (xraylib's μ/ρ) for all the tests, each set once
    with one_blas_thread(), one_openmp_thread():
        _hand_fit_attenuation(model)
        try:
            return _check_model(model, data_sum, model_sum, phase_data, phase_model,
                                phase_names, phase_pixels, beyond, pure)  # fmt: skip
        finally:
            identification.hand_attenuation(None)


def _hand_fit_attenuation(model) -> None:
    """μ/ρ of the fit's absorbers at its channels (the fit's absorption tables, computed by
    the same function at the same energies), handed to the check's absorption-edge columns
    (:func:`esmpy_hs.physics.identification.hand_attenuation`); nothing when the fit's
    model does not absorb (its tables are zeros then)."""
    tables = getattr(model, "_response", None)
    if tables is None or getattr(tables, "path_factor", None) is None:
        return
    mu = np.asarray(tables.mu_channels)
    if mu.ndim != 2 or mu.shape[1] != len(tables.absorbers):
        return
    identification.hand_attenuation(tables.channel_energies,
                                    {e: mu[:, k] for k, e in enumerate(tables.absorbers)})


def _check_model(model, data_sum, model_sum, phase_data, phase_model, phase_names,
                 phase_pixels, beyond, pure=None) -> dict:  # fmt: skip
    t0 = time.perf_counter()
    listed = listed_elements(model, data_sum, phase_names, *(pure or ()))
    known = [*model.elements, *model.stray_elements]
    kw = {"detector": model.detector, "known": known, "beyond": beyond}
    if identification.FAST_PATH:  # the findings read only the candidates found
        kw["absent"] = False
    findings = _findings(identify(data_sum, model.axis, model.beam_energy,
                                  explained=model_sum, **kw), "map")  # fmt: skip
    on_map = {g["element"] for g in findings}
    phase_kw = {**kw, "known": [*known, *on_map]}
    if phase_data is not None:
        for j in range(phase_data.shape[0]):
            if phase_pixels is not None and phase_pixels[j] < MIN_PIXELS:
                continue
            name = phase_names[j] if j < len(phase_names) else f"phase {j}"
            # what the map's test found is in the phase's base model from the start (it is
            # reported once, for the map): not tested again, one selection step less each
            found = _findings(identify(phase_data[j], model.axis, model.beam_energy,
                                       explained=phase_model[j], **phase_kw), name)  # fmt: skip
            findings += [f for f in found if f["element"] not in on_map]
    warned = []
    for f in findings:
        if (f["source"] == "specimen" and f["share"] >= MIN_SHARE
                and f["unexplained_fraction"] >= MIN_UNEXPLAINED and f["element"] not in warned):
            warned.append(f["element"])
    return {
        "findings": findings,
        "warned": warned,
        "listed": listed,
        "min_share": MIN_SHARE,
        "min_unexplained": MIN_UNEXPLAINED,
        "seconds": time.perf_counter() - t0,
        "data": np.asarray(data_sum, dtype=np.float64).tolist(),  # (Python floats)
        "model": np.asarray(model_sum, dtype=np.float64).tolist(),
        "offset": float(model.axis.offset),
        "scale": float(model.axis.scale),
    }


def listed_elements(model, data_sum: np.ndarray, phase_names=(), phase_data=None,
                    phase_pixels=None, phase_parts=None) -> dict:  # fmt: skip
    """Whether the data need each listed element's lines
    (:func:`esmpy_hs.physics.presence.listed_presence`): on the map's summed spectrum, and on
    the summed spectrum of the pixels where a phase holds ≥ ``PURE_LEVEL`` of the abundance
    (``phase_data``, ``phase_pixels``; tested with at least ``MIN_PIXELS`` of them) with the
    other phases' fitted parts there (``phase_parts``, (k, k, channels)) as a fixed part.
    Not the pixels where a phase merely dominates: those of a matrix hold the particles seen
    through it (particles_N500_w1: N read in the matrix, T = 20).

    Returns
    -------
    dict
        ``map`` ({element: T}), ``phases`` ({phase name: {element: T}}, the phases tested),
        ``threshold``, ``not_detected`` ({phase name: {element: T}}: an element not detected on
        the map is not detected in every phase; one not detected in a tested phase's pixels is
        not detected in that phase), ``seconds``.
    """
    from esmpy_hs.physics.presence import listed_presence

    t0 = time.perf_counter()
    kw = {"stray_elements": model.stray_elements, "detector": model.detector}
    whole = listed_presence(data_sum, model.axis, model.beam_energy, model.elements, **kw)
    names = list(phase_names)
    k = len(names) if phase_data is None else max(len(names), phase_data.shape[0])
    names += [f"phase {j}" for j in range(len(names), k)]
    phases: dict[str, dict[str, float]] = {}
    not_detected: dict[str, dict[str, float]] = {n: {} for n in names}
    for j in range(k if phase_data is not None else 0):
        if phase_pixels is not None and phase_pixels[j] < MIN_PIXELS:
            continue
        others = None
        if phase_parts is not None and phase_parts.shape[0] > 1:
            others = np.delete(phase_parts[j], j, axis=0).T
        r = listed_presence(phase_data[j], model.axis, model.beam_energy, model.elements,
                            others=others, fine_low=True, **kw)  # fmt: skip
        phases[names[j]] = r["statistic"]
        not_detected[names[j]].update({e: r["statistic"][e] for e in r["not_detected"]})
    for e in whole["not_detected"]:
        for n in names:
            not_detected[n].setdefault(e, whole["statistic"][e])
    return {
        "map": whole["statistic"],
        "phases": phases,
        "threshold": whole["threshold"],
        "alpha": whole["alpha"],
        "not_detected": {n: v for n, v in not_detected.items() if v},
        "seconds": time.perf_counter() - t0,
    }


def message(check: dict) -> str | None:
    """The text of the warning for a check result, or None when nothing is warned about."""
    parts = []
    for el in check["warned"]:
        f = max((g for g in check["findings"] if g["element"] == el),
                key=lambda g: g["unexplained_fraction"])  # fmt: skip
        where = "" if f["where"] == "map" else f" (pixels of {f['where']})"
        parts.append(
            f"{f['energy_keV']:.2f} keV{where}: {100 * f['unexplained_fraction']:.0f} % of the "
            f"counts in this peak are unexplained; {f['line']}? add it with "
            f"s.add_elements(['{el}'])"
        )
    if not parts:
        return None
    return ("the fitted model leaves counts unexplained: " + "; ".join(parts)
            + ". The compositions of this fit lack those elements (see s.plot_residuals())")


def notes(check: dict) -> list[str]:
    """One line per finding that is not in the warning (strays, weak lines)."""
    out = []
    seen = set(check["warned"])
    for f in check["findings"]:
        if f["element"] in seen:
            continue
        seen.add(f["element"])
        why = f["source"] if f["source"] != "specimen" else "weak"
        share = 100 * f["unexplained_fraction"]
        out.append(
            f"{f['line']} at {f['energy_keV']:.2f} keV ({why}) is not in the model: "
            f"{'< 1' if share < 0.5 else f'{share:.0f}'} % of that peak's counts"
        )
    return out


def run_check(model, data_sum, model_sum, print_info: bool, **phase) -> dict | None:
    """:func:`check_model`, its warning and notes; None if the check itself fails (logged)."""
    try:
        check = check_model(model, data_sum, model_sum, **phase)
    except Exception as exc:  # a failed check must not lose the fit
        _logger.warning("model check failed: %s", exc)
        return None
    text = message(check)
    if text is not None:
        warnings.warn(text, UnexplainedCountsWarning, stacklevel=5)
    for line in notes(check):
        _logger.info("model check: %s", line)
        if print_info:
            print(f"smart_nmf: model check: {line}")
    return check


def plot_residuals(check: dict, title: str = ""):
    """Summed data and model, the residual, and the elements found.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    y = np.asarray(check["data"])
    mu = np.maximum(np.asarray(check["model"]), 1e-9)
    e = check["offset"] + check["scale"] * np.arange(y.size)
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": (3, 1.5)})  # fmt: skip
    ax = axes[0]
    ax.plot(e, y, color="0.5", lw=0.8, label="data (summed)")
    ax.plot(e, mu, color="C0", lw=0.8, label="fitted model")
    ax.set_yscale("log")
    ax.set_ylim(max(float(np.min(y[y > 0])) if np.any(y > 0) else 0.5, 0.5) * 0.5, None)
    ax.set_ylabel("counts")
    resid = (y - mu) / np.sqrt(mu)
    axes[1].plot(e, resid, color="C0", lw=0.6)
    axes[1].axhline(0, color="0.3", lw=0.5)
    axes[1].set_ylabel("(data − model)/√model", fontsize=8)
    axes[1].set_xlabel("energy (keV)")
    shown = set()
    for f in check["findings"]:
        if f["element"] in shown:
            continue
        shown.add(f["element"])
        colour = "C3" if f["element"] in check["warned"] else "C2"
        for axm in axes:
            axm.axvline(f["energy_keV"], color=colour, lw=0.8, ls="--")
        ax.annotate(f"{f['line']} ({100 * f['unexplained_fraction']:.0f} %)",
                    (f["energy_keV"], 0.95), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=8, color=colour, va="top", ha="right")  # fmt: skip
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title((title + "\n" if title else "") + (
        "elements not in the model: " + ", ".join(sorted(shown)) if shown
        else "no counts left unexplained by an element line"), fontsize=9)  # fmt: skip
    return fig

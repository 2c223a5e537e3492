"""``s.identify_elements()``: which elements a map holds, from its summed spectrum.

Glue around :func:`esmpy_hs.physics.identification.identify`: the summed spectrum over the
channels that ``smart_nmf`` fits, on the calibrated axis and width law when the map has an
element list to calibrate with (:mod:`._calibration`), on the recorded axis and the metadata's
detector otherwise. The signal's metadata is changed only with ``add=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from esmpy_hs.physics.identification import DEFAULT_ALPHA, Identification, identify
from esmpy_hs.signals._metadata import INPUT_NODE

_logger = logging.getLogger("esmpy_hs.signals")


#: what an SEM (bulk) map's identification is told
BULK_NOTE = (
    "an SEM map (bulk specimen): the element columns assume a thin specimen, so the continuum, "
    "absorption and fluorescence of a bulk spectrum are not described and weak detections (a "
    "few per cent of the line counts or less) may come from that mismatch, not from the "
    "specimen; check them against the spectrum (s.plot()) before adding them"
)


def _acquisition(signal):
    """The signal's acquisition; an empty element list is allowed here."""
    from esmpy_hs.signals._metadata import read_acquisition

    listed = signal.metadata.get_item("Sample.elements", None)
    if listed is None or len(listed) == 0:
        return dataclasses.replace(read_acquisition(signal, elements=("O",)), elements=())
    return read_acquisition(signal)


def identify_elements(signal, *, add: bool = False, candidates: Sequence[str] | None = None,
                      alpha: float = DEFAULT_ALPHA, energy_range=None, detector=None,
                      calibrate="auto", print_info: bool = False) -> Identification:  # fmt: skip
    """See :meth:`esmpy_hs.signals.EDSespm.identify_elements`."""
    from esmpy_hs.physics import EnergyAxis
    from esmpy_hs.signals._calibration import calibrate_signal, summed_spectrum
    from esmpy_hs.signals._model import _detector, fit_channels

    acq = _acquisition(signal)
    c0, c1 = fit_channels(acq.axis, acq.beam_energy, energy_range)
    summed = summed_spectrum(signal)
    det = _detector(acq, detector)
    axis = acq.axis
    if acq.elements:  # the calibration needs some lines to fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes belong to the fit, not to this search
            cal = calibrate_signal(signal, calibrate, energy_range=energy_range,
                                   detector=detector, acquisition=acq, summed=summed)  # fmt: skip
        if cal is not None:
            axis, det = cal.axis(acq.axis), cal.detector(det)
    fitted = EnergyAxis(axis.offset + c0 * axis.scale, axis.scale, c1 - c0)
    result = identify(summed[c0:c1], fitted, acq.beam_energy, detector=det,
                      candidates=candidates, alpha=alpha, beyond=summed[c1:])  # fmt: skip
    if signal.metadata.get_item(f"{INPUT_NODE}.from_SEM", False):
        result = dataclasses.replace(result, notes=(*result.notes, BULK_NOTE))
    _logger.info("identify_elements:\n%s", result.table())
    if print_info:
        print(result.table())
    if add:
        new = [e for e in result.specimen_elements if e not in acq.elements]
        if new:
            signal.metadata.set_item("Sample.elements", sorted({*acq.elements, *new}))
        if result.stray_elements:
            print(
                f"identify_elements: {', '.join(result.stray_elements)} not added (likely stray "
                "signal: " + "; ".join(f"{e.element}: {e.source}" for e in result.present
                                       if e.stray)
                + "); model them with decomposition(..., stray_elements=[...]) or add them "
                "with s.add_elements([...]) if they belong to the specimen"
            )
    return result


def auto_elements(signal, stray_elements, energy_range, detector, print_info: bool):
    """``elements="auto"``: the specimen elements found, and the strays found added to
    ``stray_elements``."""
    result = identify_elements(signal, energy_range=energy_range, detector=detector)
    if not result.specimen_elements:
        raise ValueError(
            "elements='auto': no element line passed the test in the summed spectrum; "
            "set the elements with s.add_elements([...])\n" + result.table()
        )
    strays = list(dict.fromkeys([*(stray_elements or ()), *result.stray_elements]))
    strays = [e for e in strays if e not in result.specimen_elements]
    text = (f"elements='auto': found {', '.join(result.specimen_elements)}"
            + (f"; stray {', '.join(strays)}" if strays else ""))  # fmt: skip
    _logger.info(text)
    if print_info:
        print(f"smart_nmf: {text}")
    return list(result.specimen_elements), tuple(strays)


#: ``summed_by_labels`` of a dense NumPy map by the compiled kernel (False: the blocked
#: products, the path before; kept for the benchmark's baseline)
COMPILED_SUMS = True
_COMPILED = {np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64, np.int8,
                                   np.int16, np.int32, np.int64, np.float32, np.float64,
                                   np.bool_)}  # fmt: skip


def summed_by_labels(X, labels: Sequence[np.ndarray], sizes: Sequence[int]
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """Data summed over the pixels of each label, for several labellings in ONE pass over
    ``X`` (pixels × channels, in memory, dense or sparse, or the fit's counts compacted by pixel,
    :class:`esmpy_hs.nmf._data.CompactCounts`: one pass over its nonzeros): per labelling
    ``labels[i]`` (pixels,) with values in ``0 … sizes[i] − 1``, the sums (sizes[i], channels)
    and the number of pixels of each label."""
    from esmpy_hs.nmf._data import CompactCounts

    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = X.n_pixels if isinstance(X, CompactCounts) else X.shape[0]
    counts = [np.bincount(lab, minlength=m) for lab, m in zip(labels, sizes, strict=True)]
    total = int(offsets[-1])
    if isinstance(X, CompactCounts):
        from esmpy_hs.signals._label_sums import label_sums, label_sums_compact

        rows = np.stack([lab + o for lab, o in zip(labels, offsets, strict=False)])
        if X.dense is not None:
            out = label_sums(X.dense, rows, total)
        else:
            out = label_sums_compact(X.indptr, X.indices, X.counts, rows, total, X.n_channels)
    elif sp.issparse(X):
        rows = np.concatenate([lab + o for lab, o in zip(labels, offsets, strict=False)])
        cols = np.tile(np.arange(n), len(labels))
        onehot = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(total, n))
        sums = onehot @ X
        out = np.asarray(sums.toarray() if sp.issparse(sums) else sums, dtype=np.float64)
    elif COMPILED_SUMS and isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in _COMPILED:
        # one compiled read of the map in its own dtype, zeros skipped: 0.35 s against 1.1 s
        # for the blocked products below at 512² × 4096, 1 count/px (docs/validation.rst)
        from esmpy_hs.signals._label_sums import label_sums

        rows = np.stack([lab + o for lab, o in zip(labels, offsets, strict=False)])
        out = label_sums(X, rows, total)
    else:
        # one pass over row blocks of a few MB (other dtypes, or COMPILED_SUMS off): a
        # phase's rows gathered from the whole map would copy it once per phase
        out = np.zeros((total, X.shape[1]))
        step = max(1, (1 << 21) // max(X.shape[1], 1))
        for start in range(0, n, step):
            block = np.asarray(X[start: start + step], dtype=np.float64)
            m = block.shape[0]
            onehot = np.zeros((total, m))
            for lab, o in zip(labels, offsets, strict=False):
                onehot[lab[start: start + step] + o, np.arange(m)] = 1.0
            out += onehot @ block
    return [out[offsets[i]: offsets[i + 1]] for i in range(len(labels))], counts

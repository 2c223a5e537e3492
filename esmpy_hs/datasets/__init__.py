"""Simulated STEM-EDX spectrum images with a known ground truth.

Build abundance maps (:func:`sphere_map`, :func:`wedge_map`,
:func:`gaussian_ripple_map`, :func:`image_map`, :func:`matrix_abundances`),
phase spectra from compositions (:func:`phase_spectra`, through
:mod:`esmpy_hs.physics`), draw Poisson counts (:func:`sample_counts`) and wrap
everything in an ``EDS_ESMPY`` signal that carries its ground truth in
``metadata.ESMPY_truth`` (:func:`simulate`, :func:`make_signal`,
:func:`get_truth`). :func:`reference_sample` is the validation study's
three-phase sample in one call; :func:`esmpy_hs.metrics.score` scores a fit
of it.

Nothing here imports HyperSpy until a signal is made.
"""

from esmpy_hs.datasets._maps import (
    gaussian_ripple_map,
    image_map,
    matrix_abundances,
    sphere_map,
    wedge_map,
)
from esmpy_hs.datasets._phases import phase_spectra
from esmpy_hs.datasets._reference import (
    REFERENCE_ACQUISITION,
    REFERENCE_COMPOSITIONS,
    REFERENCE_CONTINUUM,
    REFERENCE_DENSITY_FACTORS,
    REFERENCE_PHASES,
    reference_composition_maps,
    reference_maps,
    reference_sample,
    reference_spectra,
)
from esmpy_hs.datasets._sample import dose_scale, expected_counts, sample_counts
from esmpy_hs.datasets._signal import make_signal, simulate
from esmpy_hs.datasets._truth import TRUTH_NODE, get_truth

__all__ = [
    "REFERENCE_ACQUISITION",
    "REFERENCE_COMPOSITIONS",
    "REFERENCE_CONTINUUM",
    "REFERENCE_DENSITY_FACTORS",
    "REFERENCE_PHASES",
    "TRUTH_NODE",
    "dose_scale",
    "expected_counts",
    "gaussian_ripple_map",
    "get_truth",
    "image_map",
    "make_signal",
    "matrix_abundances",
    "phase_spectra",
    "reference_composition_maps",
    "reference_maps",
    "reference_sample",
    "reference_spectra",
    "sample_counts",
    "simulate",
    "sphere_map",
    "wedge_map",
]

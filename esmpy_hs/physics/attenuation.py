"""Mass attenuation coefficients μ/ρ (cm²/g) of elements, compounds and mixtures.

Values are xraylib's total cross sections ``CS_Total`` (photoelectric + coherent + incoherent),
evaluated directly at every energy that is needed. xraylib interpolates its tabulated data
log-log within each interval between absorption edges, so no spline crosses an edge here.
``CS_Total`` is defined for 0.1-800 keV only: energies below 0.1 keV are clipped to 0.1 keV and
above 800 keV to 800 keV (an EDX axis must be cropped above 0 keV anyway; see
:func:`esmpy_hs.physics.first_valid_channel`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import xraylib
from numpy.typing import ArrayLike, NDArray

from esmpy_hs.physics._elements import atomic_number, symbol

__all__ = ["E_MAX_KEV", "E_MIN_KEV", "mass_attenuation", "material_weight_fractions"]

E_MIN_KEV = 0.1  #: lower limit of xraylib's CS_Total (keV); lower energies are clipped to it
E_MAX_KEV = 800.0  #: upper limit used for CS_Total (keV)

_cs_total = xraylib.CS_Total

try:  # xraylib's NumPy binding: the same C function over an array, without a Python call each
    import xraylib_np as _xrl_np
except ImportError:  # pragma: no cover - it comes with xraylib's wheels
    _xrl_np = None

#: from this many energies on, μ/ρ through ``xraylib_np`` (one OpenMP thread); below, one call
#: per energy. The same C function ``CS_Total``: the same values (tested).
VECTOR_MIN = 64

_OPENMP: dict[str, object] = {"depth": 0}


def _openmp_limit():
    """threadpoolctl's limit of OpenMP to one thread (the libraries looked up once); a null
    context without threadpoolctl."""
    from contextlib import nullcontext

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext()
    if "controller" not in _OPENMP:
        from esmpy_hs.nmf._blas import _look_up

        _OPENMP["controller"] = _look_up(ThreadpoolController)
    return _OPENMP["controller"].limit(limits=1, user_api="openmp")  # type: ignore[attr-defined]


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """One OpenMP thread for xraylib_np's loop inside (its threads, spinning on a shared
    machine, cost more than the loop); nothing without threadpoolctl. Nested uses set the
    limit once: a caller that needs μ/ρ of many elements (the model check's absorption-edge
    columns) holds it around all of them instead of setting and restoring it per call."""
    if _OPENMP["depth"]:
        _OPENMP["depth"] += 1  # type: ignore[operator]
        try:
            yield
        finally:
            _OPENMP["depth"] -= 1  # type: ignore[operator]
        return
    with _openmp_limit():
        _OPENMP["depth"] = 1
        try:
            yield
        finally:
            _OPENMP["depth"] = 0


def element_mass_attenuation(z: int, energy_keV: ArrayLike) -> NDArray[np.float64]:
    """μ/ρ (cm²/g) of element ``z`` at ``energy_keV`` (any shape), clipped to 0.1-800 keV."""
    e = np.clip(np.asarray(energy_keV, dtype=np.float64), E_MIN_KEV, E_MAX_KEV)
    flat = e.reshape(-1)
    if _xrl_np is not None and flat.size >= VECTOR_MIN:
        with one_openmp_thread():
            out = _xrl_np.CS_Total(np.array([int(z)], dtype=np.int64),
                                   np.ascontiguousarray(flat))[0]  # fmt: skip
        return np.ascontiguousarray(out).reshape(e.shape)
    out = np.fromiter((_cs_total(z, float(v)) for v in flat), dtype=np.float64, count=flat.size)
    return out.reshape(e.shape)


def elements_mass_attenuation(zs: ArrayLike, energy_keV: ArrayLike) -> NDArray[np.float64]:
    """μ/ρ (cm²/g) of each element ``zs`` at the energies ``energy_keV`` (1-D), (len(zs), n):
    the rows of :func:`element_mass_attenuation`, the same values, from one call over all
    elements when xraylib's NumPy binding is used."""
    z = np.asarray(zs, dtype=np.int64).reshape(-1)
    e = np.clip(np.asarray(energy_keV, dtype=np.float64).reshape(-1), E_MIN_KEV, E_MAX_KEV)
    if _xrl_np is not None and e.size >= VECTOR_MIN and z.size:
        with one_openmp_thread():
            out = _xrl_np.CS_Total(np.ascontiguousarray(z), np.ascontiguousarray(e))
        return np.ascontiguousarray(out, dtype=np.float64).reshape(z.size, e.size)
    return np.array([element_mass_attenuation(int(k), e) for k in z]).reshape(z.size, e.size)


@lru_cache(maxsize=128)
def _formula_fractions(formula: str) -> tuple[tuple[str, float], ...]:
    try:
        parsed = xraylib.CompoundParser(formula)
    except ValueError:
        raise ValueError(f"Cannot parse material {formula!r} (element symbol or formula)") from None
    return tuple(
        (symbol(int(z)), float(w))
        for z, w in zip(parsed["Elements"], parsed["massFractions"], strict=True)
    )


def material_weight_fractions(material: str | Mapping[str, float]) -> dict[str, float]:
    """Weight fractions of ``material``: an element symbol, a chemical formula (``"Si3N4"``,
    ``"C10H8O4N"``) or a mapping symbol → weight fraction (normalised to sum 1)."""
    if isinstance(material, Mapping):
        total = float(sum(material.values()))
        if not total > 0:
            raise ValueError(f"Material {dict(material)!r} has no positive fraction")
        return {symbol(k): float(v) / total for k, v in material.items()}
    return dict(_formula_fractions(str(material).strip()))


def mass_attenuation(
    material: str | int | Mapping[str, float], energy_keV: ArrayLike
) -> NDArray[np.float64] | float:
    """Mass attenuation coefficient μ/ρ of a material.

    Parameters
    ----------
    material
        Element symbol or atomic number, chemical formula, or mapping symbol → weight fraction.
    energy_keV
        Photon energy or energies (keV), any shape; clipped to 0.1-800 keV.

    Returns
    -------
    float or numpy.ndarray
        μ/ρ in cm²/g (mixture rule Σ w_i (μ/ρ)_i for compounds), same shape as ``energy_keV``.
    """
    e = np.asarray(energy_keV, dtype=np.float64)
    if isinstance(material, int | np.integer):
        out = element_mass_attenuation(atomic_number(int(material)), e)
    else:
        out = np.zeros_like(e)
        for sym, w in material_weight_fractions(material).items():
            out = out + w * element_mass_attenuation(atomic_number(sym), e)
    return float(out) if out.ndim == 0 else out

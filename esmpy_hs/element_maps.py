"""Per-pixel and per-region compositions implied by a smart_nmf fit (no HyperSpy here).

A smart_nmf fit models the counts of pixel p as ``X_p ≈ Σ_k (G_k W_k) H_kp``: ``W``'s element
rows are proportional to atoms (``W[e, k]``: atoms of element e per pixel of pure phase k, on
the common scale of G's columns) and ``H`` (pixels × k, HyperSpy's loadings) gives each phase's
abundance in each pixel. Everything here reads W through the *same* quantities as
:meth:`esmpy_hs.physics.PhysicsModel.composition` (which :meth:`EDSespm.quantify_phases` uses):
the element rows chosen for each element (``family`` for split elements) and the counts per
atom ``S_ek = Σ_c G_k[c, e]`` of each phase's G (cross sections, fluorescence yields, detector
efficiency and the phase's own absorption). Per pixel p and element e

- atoms ``a_ep = Σ_k W_ek H_kp``;
- counts ``N_ep = Σ_k S_ek W_ek H_kp`` (the element's characteristic counts the model puts in
  the pixel);
- atomic fraction ``a_ep / Σ_e' a_e'p``; weight fraction the same with ``a_ep × A_e`` (atomic
  weight A_e).

Uncertainty (1 σ) is the counting (Poisson) floor of the counts themselves, the formula that
:func:`esmpy_hs.physics.quantify_rows` applies to a phase, here applied to a pixel (or region):
``σ(a_e) / a_e = 1 / √N_e``, propagated through the normalisation
``var c_e = [(1 - c_e)² σ_e² + c_e² Σ_{j≠e} σ_j²] / (Σ_j a_j)²``; for ``"counts"``,
``σ = √N_ep``. It is the precision that the pixel's own element counts allow; it does not
include the model's errors (wrong number of phases, physics of G) and it ignores that the
fitted map pools all pixels through the phases — the maps are usually better than this σ (see
``docs/validation.rst``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from esmpy_hs.physics._elements import atomic_weight
from esmpy_hs.physics.composition import Quantification, _fraction_errors, quantify_rows

__all__ = [
    "UNITS", "PhaseRows", "element_maps", "map_block", "phase_rows", "region_quantification",
]  # fmt: skip

#: Units of :func:`element_maps`.
UNITS: tuple[str, ...] = ("at.%", "wt.%", "counts")

#: pixels per block (bounds the memory of the temporaries: ~ 8 × elements × block bytes each)
_BLOCK = 65536


@dataclass(frozen=True)
class PhaseRows:
    """Per-element, per-phase quantities of a fit (what the maps are made of).

    Attributes
    ----------
    elements : list of str
        Quantified specimen elements (stray lines and continuum excluded), in the order of
        :meth:`PhysicsModel.composition`.
    atoms : numpy.ndarray
        (e, k) ``W_ek``: atoms per pixel of pure phase k (model scale; ≥ 0).
    counts : numpy.ndarray
        (e, k) ``S_ek W_ek``: the element's characteristic counts per pixel of pure phase k.
    family : str
        How split elements were read (``"high"``, ``"low"`` or ``"combined"``).
    """

    elements: list[str]
    atoms: NDArray[np.float64]
    counts: NDArray[np.float64]
    family: str

    @property
    def atomic_weights(self) -> NDArray[np.float64]:
        """(e,) g/mol."""
        return np.array([atomic_weight(e) for e in self.elements], dtype=np.float64)


def phase_rows(W: ArrayLike, model, family: str | None = None) -> PhaseRows:
    """W's element rows and their counts per pixel of pure phase, as quantify_phases reads them.

    Parameters
    ----------
    W
        (n_columns, k) fitted W (``metadata.SmartNMF.W``).
    model : esmpy_hs.physics.PhysicsModel
        The fit's model (same column scales as W).
    family
        For split elements: ``"high"``, ``"low"`` or ``"combined"`` (default: the model's).

    Returns
    -------
    PhaseRows
    """
    W = np.asarray(W, dtype=np.float64)
    k = W.shape[1]
    G3 = model.G_for_phases(W) if model.specimen.absorbs else None
    ones = np.ones(k)
    # PhysicsModel.composition with H_sums = 1 gives counts = S_ek W_ek; with W = 1 it gives S_ek
    # (for family="combined" the summed S of both columns): the same rows and sums as
    # quantify_phases, without repeating its selection of rows.
    q = model.composition(W, ones, family=family, G=G3)
    s = model.composition(np.ones_like(W), ones, family=family, G=G3).counts
    counts = np.asarray(q.counts, dtype=np.float64)
    atoms = np.divide(counts, s, out=np.zeros_like(counts), where=s > 0)
    return PhaseRows(list(q.elements), atoms, counts, q.family)


def _check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    return unit


def _as_H(H: ArrayLike, k: int) -> NDArray[np.float64]:
    H = np.asarray(H, dtype=np.float64)
    if H.ndim == 1:
        H = H[None, :]
    if H.ndim != 2 or H.shape[1] != k:
        raise ValueError(f"H must be (pixels, {k}) (HyperSpy's loadings), got {H.shape}")
    return H


def _block(rows: PhaseRows, H: NDArray, unit: str) -> NDArray[np.float64]:
    """(pixels, e, 2): value and 1-σ of each element in each pixel of ``H`` (pixels × k)."""
    H = np.clip(H, 0.0, None)
    N = (H @ rows.counts.T).T  # (e, p)
    if unit == "counts":
        return np.stack([N, np.sqrt(N)], axis=-1).transpose(1, 0, 2)
    a = (H @ rows.atoms.T).T  # (e, p)
    rel = np.divide(1.0, np.sqrt(N), out=np.zeros_like(N), where=N > 0)
    if unit == "wt.%":
        a = a * rows.atomic_weights[:, None]
    c, err = _fraction_errors(a, a * rel)
    return (100.0 * np.stack([c, err], axis=-1)).transpose(1, 0, 2)


def _blocks(n: int, size: int = _BLOCK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def element_maps(
    rows: PhaseRows, H: ArrayLike, unit: str = "at.%"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Value and 1-σ of each element in each pixel.

    Parameters
    ----------
    rows
        From :func:`phase_rows`.
    H
        (pixels, k) abundances (HyperSpy's loadings); negative values are taken as 0.
    unit
        ``"at.%"``, ``"wt.%"`` (percent, summing to 100 over the elements in each pixel with
        signal) or ``"counts"`` (characteristic counts per pixel).

    Returns
    -------
    values, sigmas : numpy.ndarray
        (e, pixels) each; see the module docstring for σ. A pixel without element signal has
        0 ± 0.
    """
    _check_unit(unit)
    H = _as_H(H, rows.atoms.shape[1])
    out = np.empty((H.shape[0], len(rows.elements), 2))
    for sl in _blocks(H.shape[0]):
        out[sl] = _block(rows, H[sl], unit)
    return np.ascontiguousarray(out[..., 0].T), np.ascontiguousarray(out[..., 1].T)


def map_block(H_block: NDArray, rows: PhaseRows, unit: str) -> NDArray[np.float64]:
    """(pixels, e, 2) values and σ for one block of H; the function lazy maps map over chunks."""
    return _block(rows, _as_H(H_block, rows.atoms.shape[1]), _check_unit(unit))


def region_quantification(rows: PhaseRows, H: ArrayLike, name: str = "region") -> Quantification:
    """Composition of the pixels of ``H`` taken together (the fitted model summed over them).

    Parameters
    ----------
    rows
        From :func:`phase_rows`.
    H
        (pixels, k) abundances of the region's pixels (negative values taken as 0), or (k,)
        their sums.
    name
        The column name of the table.

    Returns
    -------
    Quantification
        One column: atoms ``a_e = Σ_k W_ek Σ_p H_kp`` and counts ``N_e = Σ_k S_ek W_ek Σ_p H_kp``
        through :func:`esmpy_hs.physics.quantify_rows` (the quantify_phases table format and
        errors, with ``σ(a_e)/a_e = 1/√N_e``). Summing the ``"counts"`` maps of
        :func:`element_maps` over the region gives ``counts``.
    """
    H = np.clip(np.asarray(H, dtype=np.float64), 0.0, None)
    h = H if H.ndim == 1 else _as_H(H, rows.atoms.shape[1]).sum(axis=0)
    a = rows.atoms @ h
    n = rows.counts @ h
    s = np.divide(n, a, out=np.zeros_like(n), where=a > 0)
    q = quantify_rows(rows.elements, a[:, None], s[:, None], np.ones(1), rows.family)
    q.phase_names = [str(name)]
    if q.notes:
        q.notes = [f"{name}: no element signal (no pixels, or only empty phases)"]
    return q

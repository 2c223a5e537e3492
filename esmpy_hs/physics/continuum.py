"""A non-negative linear basis for the bremsstrahlung continuum.

Two functions of the photon energy E (keV) for a beam energy E0 (keV)::

    B0(E) = (E0 - E) / E0²
    B1(E) = (E0 - E)² / (E0² · E)

both set to 0 for E >= E0, and multiplied by the detector efficiency ε(E) and the specimen
absorption A(E) when they enter G. Their coefficients are the last rows of W and stay >= 0.
E must be > 0 (B1 diverges at 0): crop the axis first.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["continuum_basis"]


def continuum_basis(energy_keV: ArrayLike, beam_energy_keV: float) -> NDArray[np.float64]:
    """Raw continuum basis (before efficiency and absorption).

    Parameters
    ----------
    energy_keV
        Photon energies (keV), all > 0, shape (n,).
    beam_energy_keV
        Beam energy E0 (keV).

    Returns
    -------
    numpy.ndarray
        (n, 2) array with columns B0(E) and B1(E) (keV⁻¹), >= 0.
    """
    e = np.asarray(energy_keV, dtype=np.float64).reshape(-1)
    e0 = float(beam_energy_keV)
    if np.any(e <= 0):
        raise ValueError("The continuum needs energies > 0 keV: crop the axis first")
    d = np.clip(e0 - e, 0.0, None)
    return np.stack([d / e0**2, d**2 / (e0**2 * e)], axis=1)

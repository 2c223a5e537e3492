"""Phase spectra from compositions, through the physics model (:mod:`esmpy_hs.physics`).

How a phase spectrum is made (phase k, atomic fractions x_k, continuum
coefficients (b0_k, b1_k), density factor d_k):

1. **Characteristic part.** ``char_k = G_k · x_k`` — the physics model's element
   columns (Bote–Salvat cross sections × xraylib line data × detector
   efficiency ε × thin-film absorption A of *this phase's own* composition ×
   Gaussian peaks integrated over the channels), weighted by the atomic
   fractions. All elements of the composition are treated as specimen elements
   (absorbed), including the Cu that mimics the grid, unless they are listed in
   ``stray_elements``.
2. **Continuum.** ``cont_k(E_c) = b0_k·B0(E_c)·ε·A_k + b1_k·B1(E_c)·ε·A_k`` with
   B0 = (E0 − E)/E0², B1 = (E0 − E)²/(E0²·E) (keV⁻¹) evaluated at the channel
   centres E_c, added to ``char_k / Σ_c char_k`` — so (b0, b1) are relative to
   a characteristic spectrum of unit sum (the validation study's convention;
   :func:`esmpy_hs.physics.simulate_spectrum`). The values are per channel, not
   per keV: the coefficients belong to a given channel width (10 eV for the
   reference sample).
3. **Density factor.** With ``rates="phase"`` (default; the convention of the
   earlier espm library, which made the reference study's data) the spectrum is
   rescaled to sum to ``d_k``: d_k is the phase's total count rate per unit
   abundance relative to the other phases. With ``rates="atoms"`` it is
   ``d_k · Σ_c char_k · (char_k/Σ_c char_k + cont_k)``: the characteristic
   counts per atom keep their physical ratios between phases (a line's
   intensity is ∝ d_k · x_ek · A_k), d_k scales the number of atoms per pixel
   and the continuum follows the characteristic intensity.

The absolute level is set later by the dose (:func:`sample_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike


def _physics():
    try:
        from esmpy_hs import physics
    except ImportError as exc:  # pragma: no cover - the package ships it
        raise ImportError("phase_spectra needs esmpy_hs.physics") from exc
    return physics


def phase_spectra(
    compositions: Mapping[str, Mapping[str, float]] | Sequence[Mapping[str, float]],
    *,
    energy_offset: float = 0.3,
    energy_scale: float = 0.01,
    channels: int = 1980,
    beam_energy: float = 200.0,
    energy_resolution_MnKa: float = 130.0,
    take_off_angle: float = 35.0,
    thickness: float | str | None = None,
    density: float | str | None = None,
    continuum: ArrayLike | None = None,
    density_factors: ArrayLike | None = None,
    rates: str = "phase",
    window: str | None = None,
    stray_elements: Sequence[str] = (),
) -> np.ndarray:
    """Relative phase spectra (k × channels) from compositions.

    See the module notes for exactly how the characteristic lines, the
    continuum and the density factors are combined.

    Parameters
    ----------
    compositions : dict or list of dict
        ``{phase name: {element: atomic fraction}}`` (order kept) or a list
        of ``{element: atomic fraction}``. Fractions are renormalised per phase.
    energy_offset : float
        Centre of the first channel, keV (> 0).
    energy_scale : float
        Channel width, keV.
    channels : int
        Number of channels.
    beam_energy : float
        Beam energy E0, keV.
    energy_resolution_MnKa : float
        Detector FWHM at Mn Kα, eV (Fiori–Newbury width model).
    take_off_angle : float
        Take-off angle, degrees.
    thickness : float or str, optional
        Specimen thickness, nm; None: no absorption.
    density : float or str, optional
        Specimen density, g/cm³ (needed with a thickness).
    continuum : array_like, shape (k, 2), optional
        (b0, b1) per phase, relative to a characteristic spectrum of unit sum;
        default no continuum.
    density_factors : array_like, shape (k,), optional
        Relative count rates (``rates="phase"``) or atom densities
        (``rates="atoms"``); default all 1.
    rates : {"phase", "atoms"}
        How the density factors apply (module notes, step 3).
    window : str, optional
        Detector window preset of :class:`esmpy_hs.physics.Detector`
        (default: the physics model's default).
    stray_elements : list of str
        Elements emitted outside the specimen (no absorption), e.g. ``["Cu"]``.

    Returns
    -------
    numpy.ndarray, shape (k, channels), float64
        Relative count rates per channel for a pixel of pure phase k; with
        ``rates="phase"`` row k sums to ``density_factors[k]``.
    """
    phys = _physics()
    comps = list(compositions.values()) if isinstance(compositions, Mapping) else list(compositions)
    k = len(comps)
    if k == 0:
        raise ValueError("no composition given")
    b = np.zeros((k, 2)) if continuum is None else np.asarray(continuum, dtype=float)
    d = np.ones(k) if density_factors is None else np.asarray(density_factors, dtype=float)
    if b.shape != (k, 2):
        raise ValueError(f"continuum must be (k, 2) = ({k}, 2), got {b.shape}")
    if d.shape != (k,) or np.any(d <= 0):
        raise ValueError(f"density_factors must be {k} positive numbers, got {d}")
    if rates not in ("phase", "atoms"):
        raise ValueError(f"rates must be 'phase' or 'atoms', not {rates!r}")

    strays = [str(e) for e in stray_elements]
    elements = sorted({str(e) for c in comps for e in c} - set(strays))
    det_kw = {"resolution_mnka": float(energy_resolution_MnKa)}
    if window is not None:
        det_kw["window"] = window
    model = phys.build_G(
        (float(energy_offset), float(energy_scale), int(channels)),
        float(beam_energy),
        elements,
        detector=phys.Detector(**det_kw),
        specimen=phys.Specimen(thickness, density, float(take_off_angle)),
        stray_elements=[e for e in strays if any(e in c for c in comps)],
        continuum=True,
    )
    out = np.empty((k, int(channels)))
    for i, comp in enumerate(comps):
        spec = phys.simulate_spectrum(dict(comp), model, continuum=(float(b[i, 0]), float(b[i, 1])))
        if rates == "phase":
            out[i] = d[i] * spec / spec.sum()
        else:
            char_total = _characteristic_total(model, comp)
            out[i] = d[i] * char_total * spec
    return out


def _characteristic_total(model, comp: Mapping[str, float]) -> float:
    """Σ_c G_k·x_k: characteristic counts per atom (model units) of a composition."""
    total = sum(float(v) for v in comp.values())
    x = {e: float(v) / total for e, v in comp.items()}
    absorbers = {e: v for e, v in x.items() if e in model.elements}
    G = model.G_for_phases([absorbers])[0] if absorbers else model.G
    w = np.zeros(model.n_columns)
    for j, (el, kind) in enumerate(zip(model.column_elements, model.kinds, strict=True)):
        if kind in ("element", "stray") and el in x:
            w[j] = x[el]
    return float((G @ w).sum())

"""The reference synthetic sample of the validation study (a lower-mantle assemblage).

Three phases on a 128 × 128 map at 200 keV (``shared/notes/validation.md``):
a bridgmanite-like matrix, a ferropericlase-like particle and a
Ca-perovskite-like particle; the particles are projected spheres of radius
25 px and maximum abundance 0.5, centred at (row 94, col 50) and
(row 69, col 80) — they overlap — and the matrix fills the rest.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from esmpy_hs.datasets._maps import matrix_abundances, sphere_map

#: Phase names of the reference sample, in order.
REFERENCE_PHASES: tuple[str, ...] = ("bridgmanite", "ferropericlase", "Ca-perovskite")

#: Atomic fractions per phase (Cu 0.05 everywhere mimics the grid).
REFERENCE_COMPOSITIONS: dict[str, dict[str, float]] = {
    "bridgmanite": {
        "Mg": 0.245, "Fe": 0.035, "Ca": 0.031, "Si": 0.219,
        "Al": 0.024, "O": 0.436, "Cu": 0.05, "Hf": 0.01,
    },
    "ferropericlase": {"Mg": 0.522, "Fe": 0.104, "O": 0.374, "Cu": 0.05},
    "Ca-perovskite": {
        "Mg": 0.020, "Fe": 0.018, "Ca": 0.188, "Si": 0.173, "Al": 0.010, "O": 0.572,
        "Ti": 0.004, "Cu": 0.05, "Sm": 0.007, "Lu": 0.006, "Nd": 0.006,
    },
}  # fmt: skip

#: Continuum coefficients (b0, b1) per phase, relative to a characteristic spectrum
#: of unit sum (see :func:`esmpy_hs.datasets.phase_spectra`).
REFERENCE_CONTINUUM: np.ndarray = np.array(
    [[3.458e-4, 6.268e-4], [1.629e-4, 9.812e-4], [7.853e-4, 3.658e-4]]
)

#: Relative count rates of the phases ("density" factors).
REFERENCE_DENSITY_FACTORS: np.ndarray = np.array([1.0, 0.8, 1.2])

#: Acquisition of the reference sample: energy axis (keV), beam (keV), detector
#: (eV FWHM at Mn Kα; take-off angle in degrees) and specimen (nm, g/cm³).
REFERENCE_ACQUISITION: dict[str, float] = {
    "energy_offset": 0.3,
    "energy_scale": 0.01,
    "channels": 1980,
    "beam_energy": 200.0,
    "energy_resolution_MnKa": 130.0,
    "take_off_angle": 35.0,
    "thickness": 100.0,
    "density": 4.5,
}

_REF_SHAPE = (128, 128)
_REF_CENTRES = ((94.0, 50.0), (69.0, 80.0))
_REF_RADIUS = 25.0
_REF_MAX = 0.5


def reference_maps(shape: tuple[int, int] = _REF_SHAPE) -> np.ndarray:
    """Abundance maps of the reference sample.

    On 128 × 128: two projected spheres (:func:`sphere_map`) of radius 25 px
    and maximum abundance 0.5, centred at (row 94, col 50) (ferropericlase)
    and (row 69, col 80) (Ca-perovskite); the matrix (bridgmanite) takes
    1 − their sum. For another shape the geometry is scaled: centres by
    rows/128 and cols/128, the radius by √(rows·cols)/128.

    Parameters
    ----------
    shape : (int, int)
        Map shape (rows, cols), pixels.

    Returns
    -------
    numpy.ndarray, shape (3, rows, cols)
        Abundances (matrix first), in [0, 1], summing to 1 in every pixel.
    """
    rows, cols = (int(n) for n in shape)
    fr, fc = rows / _REF_SHAPE[0], cols / _REF_SHAPE[1]
    radius = _REF_RADIUS * np.sqrt(fr * fc)
    particles = [
        sphere_map((rows, cols), (r0 * fr, c0 * fc), radius, _REF_MAX) for r0, c0 in _REF_CENTRES
    ]
    return matrix_abundances(np.stack(particles), matrix_first=True)


def reference_spectra(*, rates: str = "phase") -> np.ndarray:
    """Relative phase spectra of the reference sample (3 × 1980 channels).

    :func:`phase_spectra` with :data:`REFERENCE_COMPOSITIONS`,
    :data:`REFERENCE_CONTINUUM`, :data:`REFERENCE_DENSITY_FACTORS` and
    :data:`REFERENCE_ACQUISITION` (0.3 keV + 10 eV × 1980 channels, 200 keV,
    130 eV at Mn Kα, take-off angle 35°, 100 nm, 4.5 g/cm³).

    Parameters
    ----------
    rates : {"phase", "atoms"}
        How the density factors apply (see :func:`phase_spectra`).

    Returns
    -------
    numpy.ndarray, shape (3, 1980)
        Relative count rates per channel per unit abundance; with
        ``rates="phase"`` the rows sum to 1.0, 0.8 and 1.2.
    """
    return _reference_spectra(rates).copy()


@lru_cache(maxsize=2)
def _reference_spectra(rates: str) -> np.ndarray:
    from esmpy_hs.datasets._phases import phase_spectra

    acq = REFERENCE_ACQUISITION
    return phase_spectra(
        REFERENCE_COMPOSITIONS,
        energy_offset=acq["energy_offset"],
        energy_scale=acq["energy_scale"],
        channels=int(acq["channels"]),
        beam_energy=acq["beam_energy"],
        energy_resolution_MnKa=acq["energy_resolution_MnKa"],
        take_off_angle=acq["take_off_angle"],
        thickness=acq["thickness"],
        density=acq["density"],
        continuum=REFERENCE_CONTINUUM,
        density_factors=REFERENCE_DENSITY_FACTORS,
        rates=rates,
    )


def reference_sample(
    dose: float = 293.0,
    shape: tuple[int, int] = _REF_SHAPE,
    random_state: int | np.random.Generator | None = 0,
    *,
    noise: bool = True,
    rates: str = "phase",
):
    """The validation study's three-phase sample as an ``EDS_ESMPY`` signal.

    Maps from :func:`reference_maps`, spectra from :func:`reference_spectra`,
    then Poisson counts with a mean of ``dose`` counts per pixel
    (:func:`sample_counts`). The study uses dose 293 ("high signal") and 18
    ("low signal") with several seeds.

    Parameters
    ----------
    dose : float
        Mean expected counts per pixel.
    shape : (int, int)
        Map shape (rows, cols); the geometry scales with it.
    random_state : int, numpy.random.Generator or None
        Seed of the Poisson draw.
    noise : bool
        False: the data are the expected counts (float64), no draw.
    rates : {"phase", "atoms"}
        How the density factors apply (see :func:`phase_spectra`).

    Returns
    -------
    EDSespm
        Data (rows, cols, 1980) of counts (uint16), energy axis 0.3 keV +
        10 eV steps, 200 keV, 130 eV, take-off angle 35° (elevation 35°,
        tilt 0, azimuth 0), elements of the three phases,
        ``Sample.thickness`` 100 nm, ``Sample.density`` 4.5 g/cm³, and the
        ground truth in ``metadata.ESMPY_truth`` (phase spectra in counts,
        maps, compositions, continuum, density factors, dose, seed).
    """
    from esmpy_hs.datasets._signal import simulate

    acq = REFERENCE_ACQUISITION
    spectra = reference_spectra(rates=rates)
    return simulate(
        spectra,
        reference_maps(shape),
        dose=dose,
        random_state=random_state,
        noise=noise,
        phase_names=list(REFERENCE_PHASES),
        compositions=REFERENCE_COMPOSITIONS,
        density_factors=REFERENCE_DENSITY_FACTORS,
        continuum=REFERENCE_CONTINUUM,
        description=(
            f"reference lower-mantle assemblage (3 phases), dose {dose:g} counts/pixel, "
            f"rates={rates!r}"
        ),
        energy_offset=acq["energy_offset"],
        energy_scale=acq["energy_scale"],
        beam_energy=acq["beam_energy"],
        energy_resolution_MnKa=acq["energy_resolution_MnKa"],
        take_off_angle=acq["take_off_angle"],
        thickness=acq["thickness"],
        density=acq["density"],
    )


def reference_composition_maps(
    shape: tuple[int, int] = _REF_SHAPE, *, rates: str = "phase"
) -> tuple[list[str], np.ndarray]:
    """True atomic fractions of every element in every pixel of the reference sample.

    A pixel holds ``maps[k]·n_k`` of phase k, where ``n_k`` is the phase's atoms per unit
    abundance: with ``rates="atoms"`` the density factor ``d_k``; with ``rates="phase"``
    (spectra normalised to a count rate ``d_k``) ``n_k = d_k² / Σ spectrum_k(rates="atoms")``
    (atoms-mode spectra are ``d_k`` × counts per atom). Its atomic fraction of element e is
    ``Σ_k maps[k]·n_k·x_ek / Σ_k maps[k]·n_k`` (x: :data:`REFERENCE_COMPOSITIONS`).

    Parameters
    ----------
    shape : (int, int)
        Map shape (rows, cols), as for :func:`reference_maps`.
    rates : {"phase", "atoms"}
        As for :func:`reference_sample`.

    Returns
    -------
    elements : list of str
        Sorted element symbols.
    fractions : numpy.ndarray, shape (elements, rows, cols)
        Atomic fractions (sum 1 in every pixel).
    """
    if rates not in ("phase", "atoms"):
        raise ValueError(f"rates must be 'phase' or 'atoms', not {rates!r}")
    d = REFERENCE_DENSITY_FACTORS
    if rates == "atoms":
        n = d.copy()
    else:
        n = d**2 / _reference_spectra("atoms").sum(axis=1)
    elements = sorted({e for c in REFERENCE_COMPOSITIONS.values() for e in c})
    x = np.zeros((len(elements), len(REFERENCE_PHASES)))
    for k, name in enumerate(REFERENCE_PHASES):
        comp = REFERENCE_COMPOSITIONS[name]
        total = sum(comp.values())
        for e, v in comp.items():
            x[elements.index(e), k] = v / total
    maps = reference_maps(shape)
    atoms = np.einsum("ek,kyx->eyx", x * n[None, :], maps)
    return elements, atoms / atoms.sum(axis=0, keepdims=True)

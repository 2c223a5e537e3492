"""Physics of STEM-EDX spectra: the G matrix of the factorisation Y ≈ G·W·H.

HyperSpy-free. Units: energies in keV, cross sections in barn (1e-24 cm²), thickness in nm,
density in g/cm³, angles in degrees, mass attenuation in cm²/g. Quantities may also be given as
pint strings ("100 nm", "4.5 g/cm^3", "200 keV").

Main entry points
-----------------
build_G(axis, beam_energy, elements, detector=..., specimen=..., ...) -> PhysicsModel
PhysicsModel.G / .labels / .scales / .simplex_mask / .G_for_phases(W) / .composition(W, H_sums)
PhysicsModel.to_dict() / PhysicsModel.from_dict(d)
simulate_spectrum(composition, model, continuum=(b0, b1))
ionisation_cross_section(element, shell, energy_keV)   # barn, Bote-Salvat 2009
emission_lines(element, beam_energy, e_min, e_max)      # xraylib lines with cross sections
Detector(window="Si3N4", resolution_mnka=130, ...)      # resolution and efficiency
Specimen(thickness, density, take_off_angle)            # thin-film absorption
absorption_factor(composition, energy_keV, specimen)
"""

from esmpy_hs.physics.absorption import Specimen, absorption_factor
from esmpy_hs.physics.attenuation import mass_attenuation
from esmpy_hs.physics.composition import Quantification, normalise_composition
from esmpy_hs.physics.continuum import continuum_basis
from esmpy_hs.physics.cross_sections import SHELLS, ionisation_cross_section, ionisation_energy
from esmpy_hs.physics.detector import WINDOW_PRESETS, Detector, Layer, peak_matrix
from esmpy_hs.physics.energy_axis import EnergyAxis, first_valid_channel
from esmpy_hs.physics.lines import EmissionLine, emission_lines, line_notes, vacancies
from esmpy_hs.physics.model import PhysicsModel, build_G
from esmpy_hs.physics.simulation import simulate_spectrum

__all__ = [
    "SHELLS",
    "WINDOW_PRESETS",
    "Detector",
    "EmissionLine",
    "EnergyAxis",
    "Layer",
    "PhysicsModel",
    "Quantification",
    "Specimen",
    "absorption_factor",
    "build_G",
    "continuum_basis",
    "emission_lines",
    "first_valid_channel",
    "ionisation_cross_section",
    "ionisation_energy",
    "line_notes",
    "mass_attenuation",
    "normalise_composition",
    "peak_matrix",
    "simulate_spectrum",
    "vacancies",
]

"""Vacancy cascade and emission cross sections (xraylib atomic data)."""

import logging

import pytest
import xraylib

from esmpy_hs.physics import emission_lines, ionisation_cross_section, line_notes, vacancies
from esmpy_hs.physics.lines import SIEGBAHN


def _by_iupac(element, e0=200.0, **kw):
    return {x.iupac: x for x in emission_lines(element, e0, **kw)}


def test_fe_lines_at_200kev_without_transfer():
    # shared/notes/physics.md §2: Fe Kα1 65.9 b, Kα2/Kα1 0.51, Kβ1/Kα1 0.135, Lα1/Kα1 1.07
    fe = _by_iupac("Fe", vacancy_transfer=False)
    ka1 = fe["KL3"].cross_section
    assert ka1 == pytest.approx(65.9, abs=0.05)
    assert fe["KL2"].cross_section / ka1 == pytest.approx(0.51, abs=0.005)
    assert fe["KM3"].cross_section / ka1 == pytest.approx(0.135, abs=5e-4)
    assert fe["L3M5"].cross_section / ka1 == pytest.approx(1.07, abs=0.005)
    assert fe["KL3"].energy_keV == pytest.approx(6.4039, abs=1e-4)
    assert fe["KL3"].siegbahn == "Ka1" and fe["KL3"].label == "Fe_Ka1"
    assert fe["L3M5"].family == "L" and fe["L3M5"].name == "La1"


def test_cu_lines_at_200kev_without_transfer():
    cu = _by_iupac("Cu", vacancy_transfer=False)
    ka1 = cu["KL3"].cross_section
    assert ka1 == pytest.approx(62.1, abs=0.05)
    assert cu["L3M5"].cross_section / ka1 == pytest.approx(1.52, abs=0.005)


def test_vacancy_transfer_adds_about_two_percent_to_L3():
    for el in ("Fe", "Cu"):
        with_t, without = _by_iupac(el), _by_iupac(el, vacancy_transfer=False)
        gain = with_t["L3M5"].cross_section / without["L3M5"].cross_section - 1
        assert 0.005 < gain < 0.05
        assert with_t["KL3"].cross_section == without["KL3"].cross_section


def test_coster_kronig_feeds_L3():
    n = vacancies("Fe", 200.0, vacancy_transfer=False)
    sigma_l3 = ionisation_cross_section("Fe", "L3", 200.0)
    # Coster-Kronig adds 16-17 % to n_L3 for Fe (notes §2)
    assert 0.15 < n["L3"] / sigma_l3 - 1 < 0.18
    assert n["K"] == pytest.approx(ionisation_cross_section("Fe", "K", 200.0))


def test_missing_values_are_noted_not_silent():
    notes = line_notes("Fe")
    assert any("L2->L3" in t and "taken as 0" in t for t in notes)


def test_siegbahn_table_matches_xraylib_aliases():
    for iupac, sieg in SIEGBAHN.items():
        macro = {"Ln": "LE", "Ll": "LL", "Mz1": None, "Mz2": None}.get(sieg, sieg.upper())
        if macro is None:
            continue
        assert getattr(xraylib, f"{macro}_LINE") == getattr(xraylib, f"{iupac}_LINE"), iupac


def test_energy_window_and_sorting():
    lines = emission_lines("Hf", "200 keV", e_min=1.0, e_max="10 keV")
    energies = [x.energy_keV for x in lines]
    assert energies == sorted(energies)
    assert 1.0 <= min(energies) and max(energies) <= 10.0
    names = {x.name for x in lines}
    assert {"Ma1", "La1", "Lb1"} <= names
    strong = emission_lines("Hf", 200.0, 1.0, 10.0, min_relative=0.1)
    assert 0 < len(strong) < len(lines)


def test_scaling_with_beam_energy_follows_sigma():
    a, b = _by_iupac("Si", 200.0), _by_iupac("Si", 300.0)
    ratio = ionisation_cross_section("Si", "K", 300.0) / ionisation_cross_section("Si", "K", 200.0)
    assert b["KL3"].cross_section / a["KL3"].cross_section == pytest.approx(ratio, rel=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="Qq"):
        emission_lines("Qq", 200.0)
    with pytest.raises(ValueError):
        emission_lines("Fe", 0.0)


def test_notes_are_logged(caplog):
    from esmpy_hs.physics import lines as lines_module

    lines_module._element_atomic_data.cache_clear()
    lines_module._logged.clear()
    with caplog.at_level(logging.INFO, logger="esmpy_hs.physics"):
        line_notes("Fe")
    assert any("Coster-Kronig" in r.getMessage() for r in caplog.records)

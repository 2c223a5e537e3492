"""Shared inputs of the model check's tests (``test_check_first.py``, ``test_check_new_axis.py``):
the calibrated axis and detector of a typical fit, the known elements of the reference sample,
and a fixture that empties the identification's caches."""

from __future__ import annotations

import pytest

from esmpy_hs.physics import Detector, EnergyAxis
from esmpy_hs.physics import identification as idm

AXIS = EnergyAxis(0.2553, 0.01001, 1980)
DET = Detector(resolution_mnka=131.0)
KNOWN = ["Mg", "Si", "O", "Fe", "Ca", "Al", "Sm", "Lu", "Hf", "Cu"]


@pytest.fixture
def fresh(monkeypatch):
    """The candidates' columns built anew (as for a new map's axis), nothing handed over."""
    monkeypatch.setattr(idm, "_CACHE", {})
    monkeypatch.setattr(idm, "_NUISANCE", {})
    monkeypatch.setattr(idm, "_JOINED", {})
    monkeypatch.setattr(idm, "_HANDED_MU", {})

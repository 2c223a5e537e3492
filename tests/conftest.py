"""Shared fixtures for the esmpy-hs test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

#: The shared folder beside the checkout (real data, notes); absent on some machines.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_MAP = SHARED / "data" / "71GPa_experimental_data.hspy"


@pytest.fixture
def real_map_path() -> Path:
    """Path of the real 201 × 201 × 2048 STEM-EDX map; skips when absent."""
    if not REAL_MAP.exists():
        pytest.skip(f"real map not found at {REAL_MAP}")
    return REAL_MAP

"""Small maps shared by the reliability battery (issue #17)."""

from __future__ import annotations

import pytest

#: a few iterations: these tests check behaviour, not fit quality
FAST = {"max_iter": 15, "print_info": False}


@pytest.fixture(scope="session")
def base_map():
    """A 12 × 12 reference-sample map, 300 counts per pixel, thickness 100 nm (absorption on)."""
    from esmpy_hs.datasets import reference_sample

    return reference_sample(dose=300, shape=(12, 12))


@pytest.fixture
def small(base_map):
    """A fresh copy of :func:`base_map` for each test."""
    return base_map.deepcopy()


@pytest.fixture(scope="session")
def fitted_map(base_map):
    """:func:`base_map` after a short smart_nmf fit with 3 phases."""
    s = base_map.deepcopy()
    s.decomposition(algorithm="smart_nmf", output_dimension=3, **FAST)
    return s


@pytest.fixture
def fitted(fitted_map):
    """A fresh copy of :func:`fitted_map` for each test."""
    return fitted_map.deepcopy()

"""Poisson sampling: the requested dose, reproducibility, dtype."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.datasets import dose_scale, expected_counts, reference_maps, sample_counts


@pytest.fixture
def toy():
    rng = np.random.default_rng(1)
    spectra = rng.random((3, 200)) * np.array([[1.0], [3.0], [0.5]])
    maps = reference_maps((48, 40))
    return spectra, maps


def test_expected_counts_has_the_dose(toy):
    spectra, maps = toy
    ey = expected_counts(spectra, maps, dose=293)
    assert ey.shape == (48, 40, 200)
    assert ey.sum(axis=-1).mean() == pytest.approx(293, rel=1e-12)
    # linear mixture with one global factor
    s = dose_scale(spectra, maps, 293)
    np.testing.assert_allclose(ey[5, 7], s * maps[:, 5, 7] @ spectra)
    # dose=None keeps the spectra's own scale
    np.testing.assert_allclose(expected_counts(spectra, maps)[5, 7], maps[:, 5, 7] @ spectra)


@pytest.mark.parametrize("dose", [293.0, 18.0])
def test_poisson_mean_dose(toy, dose):
    spectra, maps = toy
    y = sample_counts(spectra, maps, dose=dose, random_state=0)
    assert y.shape == (48, 40, 200)
    assert y.dtype == np.uint16
    # The total count T over P pixels is Poisson(dose·P): the per-pixel mean has standard
    # deviation √(dose/P). Allow 5 standard deviations (false-failure rate ≈ 6e-7).
    n_pix = 48 * 40
    assert abs(y.sum(axis=-1).mean() - dose) < 5 * np.sqrt(dose / n_pix)


def test_poisson_per_channel_mean(toy):
    # channel totals over the map follow the expected spectrum (each a Poisson variable)
    spectra, maps = toy
    y = sample_counts(spectra, maps, dose=293, random_state=3)
    ey = expected_counts(spectra, maps, dose=293)
    tot, etot = y.sum(axis=(0, 1)), ey.sum(axis=(0, 1))
    z = (tot - etot) / np.sqrt(etot)
    assert abs(z.mean()) < 5 / np.sqrt(z.size)  # mean of 200 ~N(0, 1) variables
    assert 0.7 < z.std() < 1.3


def test_seed_reproducibility(toy):
    spectra, maps = toy
    a = sample_counts(spectra, maps, dose=50, random_state=42)
    b = sample_counts(spectra, maps, dose=50, random_state=42)
    c = sample_counts(spectra, maps, dose=50, random_state=43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g = sample_counts(spectra, maps, dose=50, random_state=np.random.default_rng(42))
    np.testing.assert_array_equal(a, g)


def test_dtype_widens_for_high_counts():
    spectra = np.zeros((1, 4))
    spectra[0, 0] = 1.0
    maps = np.ones((1, 2, 2))
    y = sample_counts(spectra, maps, dose=1e6, random_state=0)
    assert y.dtype == np.int32
    assert abs(y[..., 0].mean() - 1e6) < 5 * np.sqrt(1e6 / 4)
    with pytest.raises(ValueError):
        sample_counts(spectra, maps, dose=10, dtype=float)


def test_bad_inputs():
    with pytest.raises(ValueError):
        sample_counts(np.ones((2, 5)), np.ones((3, 4, 4)), dose=1)
    with pytest.raises(ValueError):
        sample_counts(-np.ones((1, 5)), np.ones((1, 4, 4)), dose=1)
    with pytest.raises(ValueError):
        sample_counts(np.ones((1, 5)), np.ones((1, 4, 4)), dose=0)

"""Abundance maps: geometry, range, and the sum-to-one helper."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.datasets import (
    gaussian_ripple_map,
    image_map,
    matrix_abundances,
    reference_maps,
    sphere_map,
    wedge_map,
)


def test_sphere_centre_value_and_radius():
    m = sphere_map((64, 64), (30, 20), radius=10, max_abundance=0.5)
    assert m[30, 20] == pytest.approx(0.5)
    assert m.max() == pytest.approx(0.5)
    # support: exactly the pixels strictly closer than the radius
    r, c = np.indices(m.shape)
    d = np.hypot(r - 30, c - 20)
    assert np.all(m[d >= 10] == 0)
    assert np.all(m[d < 10] > 0)
    # chord profile: at d = 6 (r = 10) the chord is 2·8 of the central 2·10
    assert m[36, 20] == pytest.approx(0.5 * 0.8)
    assert m[30, 26] == pytest.approx(0.5 * 0.8)


def test_sphere_total_is_projected_volume():
    # Σ max·√(1 − d²/r²) over the disc ≈ max · (2/3)·π r²
    m = sphere_map((200, 200), (100, 100), radius=40, max_abundance=1.0)
    assert m.sum() == pytest.approx(2 / 3 * np.pi * 40**2, rel=2e-3)


def test_sphere_rejects_bad_input():
    with pytest.raises(ValueError):
        sphere_map((10, 10), (5, 5), radius=0)
    with pytest.raises(ValueError):
        sphere_map((10, 10), (5, 5), radius=3, max_abundance=1.5)


def test_wedge_is_linear_ramp():
    m = wedge_map((4, 11), angle=0, low=0.1, high=0.6)
    np.testing.assert_allclose(m[0], 0.1 + 0.5 * np.arange(11) / 10)
    np.testing.assert_allclose(m, np.broadcast_to(m[0], m.shape))
    # 90°: increases from bottom to top
    v = wedge_map((11, 4), angle=90)
    assert v[-1, 0] == pytest.approx(0) and v[0, 0] == pytest.approx(1)
    # partial ramp: flat outside [start, stop]
    p = wedge_map((1, 101), start=0.25, stop=0.75)
    assert np.all(p[0, :26] == 0) and np.all(p[0, 75:] == 1)


def test_gaussian_ripple():
    m = gaussian_ripple_map((41, 81), width=3, wavelength=40, amplitude=0, max_abundance=0.7)
    # straight band through the centre row, Gaussian across
    assert m[20].min() == pytest.approx(0.7)
    assert m[23, 0] == pytest.approx(0.7 * np.exp(-0.5))
    rip = gaussian_ripple_map((41, 81), width=2, wavelength=40, amplitude=8)
    assert 0 <= rip.min() and rip.max() <= 1
    # the crest moves sideways along the band
    assert np.argmax(rip[:, 40]) != np.argmax(rip[:, 50])


def test_image_map_normalisation():
    img = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_allclose(image_map(img), [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(image_map(img, 0.5, normalise="max"), 0.5 * img / 10)
    assert np.all(image_map(np.ones((3, 3))) == 0)
    with pytest.raises(ValueError):
        image_map(np.ones(3))


@pytest.mark.parametrize(
    "maps",
    [
        [sphere_map((50, 60), (20, 20), 15, 0.5), sphere_map((50, 60), (25, 35), 15, 0.5)],
        [sphere_map((50, 60), (25, 30), 20, 0.9), sphere_map((50, 60), (25, 32), 20, 0.9)],
        [wedge_map((50, 60)), gaussian_ripple_map((50, 60), 5, 30, 5)],
    ],
)
def test_matrix_abundances_sum_to_one(maps):
    a = matrix_abundances(np.stack(maps))
    assert a.shape == (3, 50, 60)
    np.testing.assert_allclose(a.sum(axis=0), 1.0, atol=1e-12)
    assert a.min() >= 0 and a.max() <= 1
    last = matrix_abundances(np.stack(maps), matrix_first=False)
    np.testing.assert_allclose(last[-1], a[0])


def test_matrix_abundances_keeps_particles_when_possible():
    p = np.stack([sphere_map((40, 40), (20, 20), 10, 0.5)])
    a = matrix_abundances(p)
    np.testing.assert_allclose(a[1], p[0])
    np.testing.assert_allclose(a[0], 1 - p[0])


def test_reference_maps_geometry():
    m = reference_maps()
    assert m.shape == (3, 128, 128)
    np.testing.assert_allclose(m.sum(axis=0), 1.0, atol=1e-12)
    assert m.min() >= 0 and m.max() <= 1
    assert m[1, 94, 50] == pytest.approx(0.5)
    assert m[2, 69, 80] == pytest.approx(0.5)
    assert m[1, 94, 50 + 25] == 0 and m[1, 94, 50 + 24] > 0
    # the particles overlap
    assert np.any((m[1] > 0) & (m[2] > 0))
    small = reference_maps((64, 32))
    assert small.shape == (3, 64, 32)
    np.testing.assert_allclose(small.sum(axis=0), 1.0, atol=1e-12)
    assert small[1, 47, 12] == pytest.approx(0.5 * np.sqrt(1 - 0.5**2 / (25 * np.sqrt(0.125)) ** 2))

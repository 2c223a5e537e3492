"""Element maps and region compositions from a smart_nmf fit (issue #19)."""

from __future__ import annotations

import hyperspy.api as hs
import numpy as np
import pytest

from esmpy_hs import element_maps as em
from esmpy_hs.datasets import reference_composition_maps, reference_maps, reference_sample
from esmpy_hs.physics.composition import quantify_rows
from esmpy_hs.signals._decomposition import fit_arrays

SHAPE = (32, 32)


@pytest.fixture(scope="module")
def fitted():
    s = reference_sample(dose=293, shape=SHAPE, random_state=0)
    s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False, random_state=0)
    return s


def _by_element(maps):
    return {m.metadata.General.title: m for m in maps}


def _sigma(m):
    return np.sqrt(np.asarray(m.metadata.Signal.Noise_properties.variance.data))


# ---- the pure computation on a known W and H --------------------------------------------------


@pytest.fixture(scope="module")
def rows_and_fit(fitted):
    fit = fit_arrays(fitted)
    return em.phase_rows(fit["W"], fit["model"]), fit


def test_pure_phase_pixels_give_quantify_phases_fractions(fitted, rows_and_fit):
    import dataclasses

    from esmpy_hs.signals._record import read_record

    rows, fit = rows_and_fit
    # the element maps are per pixel, not marked by the model check's presence test: compared
    # with the phase table before that marking
    q = dataclasses.replace(read_record(fitted), model_check=None).quantification()
    assert rows.elements == q.elements
    k = fit["W"].shape[1]
    H = np.eye(k) * 3.0  # one pixel of each pure phase (3 × the pure-phase abundance)
    at, at_err = em.element_maps(rows, H, "at.%")
    wt, _ = em.element_maps(rows, H, "wt.%")
    np.testing.assert_allclose(at, 100 * q.atomic_fractions, atol=1e-9)
    np.testing.assert_allclose(wt, 100 * q.weight_fractions, atol=1e-9)
    # σ: the quantify_rows floor applied to the pixel (its H sums are the pixel's H)
    for j in range(k):
        ref = quantify_rows(q.elements, rows.atoms[:, [j]], rows.counts[:, [j]]
                            / np.where(rows.atoms[:, [j]] > 0, rows.atoms[:, [j]], 1),
                            np.array([3.0]))  # fmt: skip
        np.testing.assert_allclose(at_err[:, j], 100 * ref.atomic_errors[:, 0], rtol=1e-9)
    # a region of pure phase-j pixels: that phase's fractions
    region = em.region_quantification(rows, np.tile(H[1], (50, 1)))
    np.testing.assert_allclose(region.atomic_fractions[:, 0], q.atomic_fractions[:, 1], atol=1e-12)


def test_units_and_sums(rows_and_fit):
    rows, fit = rows_and_fit
    H = fit["H"]
    at, _ = em.element_maps(rows, H, "at.%")
    wt, _ = em.element_maps(rows, H, "wt.%")
    counts, sig = em.element_maps(rows, H, "counts")
    np.testing.assert_allclose(at.sum(axis=0), 100.0, rtol=1e-9)
    np.testing.assert_allclose(wt.sum(axis=0), 100.0, rtol=1e-9)
    np.testing.assert_allclose(sig, np.sqrt(counts))
    # the model's characteristic counts are part of its total counts per pixel
    assert np.all(counts.sum(axis=0) > 0)
    with pytest.raises(ValueError, match="unit"):
        em.element_maps(rows, H, "ppm")
    with pytest.raises(ValueError, match="pixels"):
        em.element_maps(rows, H[:, :2], "at.%")


# ---- against the simulator's truth ------------------------------------------------------------


def test_maps_match_true_composition_within_sigma(fitted):
    maps = _by_element(fitted.get_element_maps("at.%"))
    elements, truth = reference_composition_maps(SHAPE)
    checked = 0
    for i, el in enumerate(elements):
        t = 100 * truth[i]
        if t.max() < 1.0:  # trace elements: fraction of a percent everywhere
            continue
        m = maps[el]
        err = np.asarray(m.data) - t
        coverage = np.mean(np.abs(err) <= _sigma(m))
        # a 1-σ band holds 68 % of Gaussian errors; a biased map (wrong phases, wrong physics)
        # falls out of it in the pixels where the element changes
        assert coverage >= 0.9, (el, coverage)
        checked += 1
    assert checked >= 6
    # the maps are denoised by the phase model: much better than the per-pixel floor
    mg = maps["Mg"]
    rmse = np.sqrt(np.mean((np.asarray(mg.data) - 100 * truth[elements.index("Mg")]) ** 2))
    assert rmse < 0.5 * _sigma(mg).mean()


def test_region_sums_and_pure_phase(fitted, rows_and_fit):
    rows, fit = rows_and_fit
    truth_maps = reference_maps(SHAPE)
    region = truth_maps[0] > 0.999  # pure matrix (bridgmanite) pixels
    assert region.sum() > 100
    q = fitted.quantify_region(region)
    assert q.phase_names == ["region"]
    counts = _by_element(fitted.get_element_maps("counts"))
    summed = np.array([np.asarray(counts[el].data)[region].sum() for el in q.elements])
    np.testing.assert_allclose(q.counts[:, 0], summed, rtol=1e-9)
    # at.% of the region = the atoms-weighted mean of the pixels' at.%
    at = _by_element(fitted.get_element_maps("at.%"))
    atoms = (fit["H"] @ rows.atoms.T).sum(axis=1).reshape(SHAPE)[region]
    mean = [np.average(np.asarray(at[el].data)[region], weights=atoms) for el in q.elements]
    np.testing.assert_allclose(100 * q.atomic_fractions[:, 0], mean, rtol=1e-9, atol=1e-9)

    # the region is pure matrix: its composition is the matrix phase's
    phases = fitted.quantify_phases()
    j = int(np.argmax(fit["H"][region.ravel()].sum(axis=0)))
    diff = 100 * np.abs(q.atomic_fractions[:, 0] - phases.atomic_fractions[:, j])
    tol = 100 * 2 * np.hypot(q.atomic_errors[:, 0], phases.atomic_errors[:, j]) + 0.1
    assert np.all(diff <= tol), dict(zip(q.elements, diff.round(3), strict=True))


def test_roi_equals_mask(fitted):
    roi = hs.roi.RectangularROI(left=4, top=6, right=14, bottom=20)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[6:20, 4:14] = True  # rows top..bottom, columns left..right (pixel scale 1, offset 0)
    a = fitted.quantify_region(roi)
    b = fitted.quantify_region(mask)
    np.testing.assert_allclose(a.atomic_fractions, b.atomic_fractions)
    np.testing.assert_allclose(a.counts, b.counts)
    # an ROI in calibrated units (2 nm pixels) picks the same pixels
    scaled = fitted.deepcopy()
    for ax in scaled.axes_manager.navigation_axes:
        ax.scale, ax.units = 2.0, "nm"
    c = scaled.quantify_region(hs.roi.RectangularROI(left=8, top=12, right=28, bottom=40))
    np.testing.assert_allclose(c.counts, b.counts)
    circle = fitted.quantify_region(hs.roi.CircleROI(cx=16, cy=16, r=5))
    assert 0 < circle.counts.sum() < b.counts.sum() * 2
    with pytest.raises(ValueError, match="navigation image"):
        fitted.quantify_region(np.zeros((5, 5), dtype=bool))
    with pytest.raises(ValueError, match="no pixel"):
        fitted.quantify_region(np.zeros(SHAPE, dtype=bool))


def test_maps_are_signals_that_save_and_load(fitted, tmp_path):
    maps = fitted.get_element_maps("wt.%")
    nav = fitted.axes_manager.navigation_axes
    for m in maps:
        assert isinstance(m, hs.signals.Signal2D)
        assert m.axes_manager.signal_shape == tuple(a.size for a in nav)
        assert m.metadata.Sample.elements == [m.metadata.General.title]
    m = _by_element(maps)["Mg"]
    path = tmp_path / "Mg.hspy"
    m.save(path)
    back = hs.load(path)
    np.testing.assert_array_equal(back.data, m.data)
    np.testing.assert_array_equal(
        back.metadata.Signal.Noise_properties.variance.data,
        m.metadata.Signal.Noise_properties.variance.data,
    )
    assert back.metadata.ElementMap.unit == "wt.%"
    # and from a saved fitted signal
    fitted.save(tmp_path / "fit.hspy")
    again = _by_element(hs.load(tmp_path / "fit.hspy").get_element_maps("wt.%"))["Mg"]
    np.testing.assert_allclose(again.data, m.data)


def test_lazy_and_eager_give_the_same_maps(fitted, tmp_path):
    fitted.save(tmp_path / "fit.hspy")
    lazy = hs.load(tmp_path / "fit.hspy", lazy=True)
    assert lazy._lazy
    eager = fitted.get_element_maps("at.%")
    lazy_maps = lazy.get_element_maps("at.%")
    for a, b in zip(eager, lazy_maps, strict=True):
        assert b._lazy
        assert a.metadata.General.title == b.metadata.General.title
        b.compute()
        np.testing.assert_allclose(b.data, a.data, rtol=1e-12, atol=1e-12)
        var = b.metadata.Signal.Noise_properties.variance
        var.compute()
        np.testing.assert_allclose(var.data, a.metadata.Signal.Noise_properties.variance.data)
    mask = reference_maps(SHAPE)[1] > 0.2  # around a particle
    np.testing.assert_allclose(
        lazy.quantify_region(mask).atomic_fractions, fitted.quantify_region(mask).atomic_fractions
    )


def test_plot_element_maps(fitted, tmp_path):
    import matplotlib.pyplot as plt

    ref = fitted.get_element_maps("at.%")
    fig = fitted.plot_element_maps(
        elements=["Mg", "Si", "Ca"], reference=ref, sigma=True, filename=tmp_path / "m.png"
    )
    assert (tmp_path / "m.png").stat().st_size > 0
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "Mg (smart_nmf)" in titles and "Mg (line windows)" in titles and "Mg 1σ" in titles
    plt.close(fig)
    with pytest.raises(ValueError, match="no map"):
        fitted.plot_element_maps(elements=["Xe"])


def test_no_fit_is_an_error(fitted):
    s = reference_sample(dose=10, shape=(4, 4))
    with pytest.raises(ValueError, match="smart_nmf"):
        s.get_element_maps()
    other = fitted.deepcopy()
    other.change_dtype("float64")
    other.decomposition(algorithm="SVD", output_dimension=3, print_info=False)
    with pytest.raises(ValueError, match="not smart_nmf"):
        other.get_element_maps()

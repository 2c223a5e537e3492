"""Metrics on known cases, and one-call scoring of a (mock-)fitted simulated signal."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from esmpy_hs.metrics import (
    composition_errors,
    map_mse,
    match_phases,
    score,
    spectral_angle,
)


def test_spectral_angle_known_cases():
    a = np.array([1.0, 2.0, 3.0])
    assert spectral_angle(a, a) == 0.0
    assert spectral_angle(a, 7.5 * a) == pytest.approx(0.0, abs=1e-6)
    assert spectral_angle([1, 0, 0], [0, 3, 0]) == pytest.approx(90.0)
    assert spectral_angle([1, 0], [1, 1]) == pytest.approx(45.0)
    assert spectral_angle([1, 0], [-1, 0]) == pytest.approx(180.0)
    assert np.isnan(spectral_angle([0, 0], [1, 0]))


def test_spectral_angle_vectorised():
    a = np.array([[1.0, 0, 0], [0, 1, 0]])
    b = np.array([[1.0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(spectral_angle(a, b), [0.0, 90.0])
    # broadcasting: all pairs
    np.testing.assert_allclose(spectral_angle(a[:, None], b[None]), [[0, 0], [90, 90]])
    with pytest.raises(ValueError):
        spectral_angle(np.ones(3), np.ones(4))


def test_map_mse_known_arrays():
    t = np.zeros((2, 2, 2))
    e = np.zeros((2, 2, 2))
    e[0, 0, 0] = 1.0  # one squared error of 1 among 4 pixels of phase 0
    e[1] = 0.5  # phase 1: error 0.5 everywhere
    np.testing.assert_allclose(map_mse(t, e, per_phase=True), [0.25, 0.25])
    assert map_mse(t, e) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        map_mse(t, e[:1])


def test_map_mse_renormalise():
    t = np.stack([np.full((3, 3), 0.25), np.full((3, 3), 0.75)])
    e = 40.0 * t  # right proportions, count scale
    assert map_mse(t, e) > 1
    assert map_mse(t, e, renormalise=True) == pytest.approx(0.0)
    e[:, 0, 0] = 0.0  # an all-zero pixel stays 0 after renormalising
    per = map_mse(t, e, renormalise=True, per_phase=True)
    np.testing.assert_allclose(per, [0.25**2 / 9, 0.75**2 / 9])


def _phases(rng, k=4, n=300):
    spectra = rng.random((k, n)) ** 4  # peaky, distinct spectra
    maps = rng.dirichlet(np.ones(k), size=(10, 12)).transpose(2, 0, 1)
    return spectra, maps


def test_permutation_recovery():
    rng = np.random.default_rng(0)
    spectra, maps = _phases(rng)
    perm = [2, 0, 3, 1]
    est_spectra = 3.0 * spectra[perm] + 0.01 * rng.random(spectra.shape)
    est_maps = 5.0 * maps[perm]
    m = match_phases(spectra, est_spectra, maps, est_maps)
    # true phase i is estimated component perm.index(i)
    assert m.permutation == tuple(int(np.argsort(perm)[i]) for i in range(4))
    assert m.mse_permutation == m.permutation and not m.disagree
    assert m.angles.shape == (4, 4) and m.mse.shape == (4, 4)
    by_mse = match_phases(spectra, est_spectra, maps, est_maps, by="mse")
    assert by_mse.permutation == m.permutation


def test_matching_disagreement_and_extra_components():
    rng = np.random.default_rng(1)
    spectra, maps = _phases(rng, k=2)
    # spectra in order, maps swapped: angle and MSE matchings disagree
    m = match_phases(spectra, spectra, maps, maps[::-1])
    assert m.angle_permutation == (0, 1)
    assert m.mse_permutation == (1, 0)
    assert m.disagree
    # more components than phases: extra ones stay unmatched
    extra = np.vstack([rng.random((1, spectra.shape[1])), spectra[::-1]])
    assert match_phases(spectra, extra).permutation == (2, 1)
    with pytest.raises(ValueError):
        match_phases(spectra, spectra[:1])
    with pytest.raises(ValueError):
        match_phases(spectra, spectra, by="mse")


def test_composition_errors():
    true = {"A": {"Fe": 0.5, "O": 0.5}, "B": {"Si": 0.2, "O": 0.6, "Cu": 0.2}}
    est = {"A": {"Fe": 45.0, "O": 55.0}, "B": {"Si": 30.0, "O": 70.0}}
    err = composition_errors(true, est)
    assert err["A"] == pytest.approx({"Fe": 5.0, "O": 5.0})
    # B: Cu not modelled → truth renormalised over Si, O: Si 25, O 75 at.%
    assert err["B"] == pytest.approx({"Si": 5.0, "O": 5.0})
    # a modelled element absent from the truth counts as 0 at.%
    single = composition_errors({"Fe": 1.0}, {"Fe": 90.0, "Ni": 10.0})
    assert single == pytest.approx({"Fe": 10.0, "Ni": 10.0})
    with pytest.raises(KeyError):
        composition_errors(true, {"A": est["A"]})


# --- score() on a simulated signal with hand-made "fit" results ---------------


@pytest.fixture
def fitted():
    from esmpy_hs.datasets import reference_maps, simulate

    rng = np.random.default_rng(2)
    spectra = rng.random((3, 120)) ** 3
    comps = {
        "bridgmanite": {"Mg": 0.2, "Si": 0.2, "O": 0.6},
        "ferropericlase": {"Mg": 0.4, "Fe": 0.1, "O": 0.5},
        "Ca-perovskite": {"Ca": 0.2, "Si": 0.2, "O": 0.6},
    }
    s = simulate(
        spectra, reference_maps((16, 20)), dose=200, random_state=0,
        phase_names=list(comps), compositions=comps,
    )  # fmt: skip
    order = [1, 2, 0]  # fitted components in another order
    maps = reference_maps((16, 20))
    s.learning_results.factors = 7.0 * spectra[order].T  # channels × k
    s.learning_results.loadings = 3.0 * maps[order].reshape(3, -1).T  # pixels × k
    return s, comps, order


def test_score_perfect_fit(fitted):
    s, _, _ = fitted
    res = score(s)
    assert res.permutation == (2, 0, 1)  # true phase i ↔ component order.index(i)
    np.testing.assert_allclose(res.angles, 0.0, atol=1e-5)
    np.testing.assert_allclose(res.mse, 0.0, atol=1e-20)
    assert res.mean_angle == pytest.approx(0, abs=1e-5) and not res.disagree
    # no smart_nmf fit behind these results: quantification is skipped with a note
    assert res.composition_errors is None
    assert any("quantify_phases" in n for n in res.notes)
    d = res.as_dict()
    assert d["permutation"] == [2, 0, 1] and d["phase_names"][1] == "ferropericlase"
    assert "bridgmanite" in str(res)
    with pytest.raises(ValueError):
        score(s, quantify=True)
    assert score(s, quantify=False).notes == []


def test_score_without_quantify_phases(fitted, monkeypatch):
    from esmpy_hs.signals import EDSespm

    s, _, _ = fitted
    if hasattr(EDSespm, "quantify_phases"):
        monkeypatch.delattr(EDSespm, "quantify_phases")
    res = score(s)
    assert res.composition_errors is None
    assert any("no quantify_phases() method" in n for n in res.notes)
    with pytest.raises(AttributeError, match="quantify_phases"):
        score(s, quantify=True)


def test_score_only_fitted_channels(fitted):
    s, _, _ = fitted
    s.learning_results.factors[:5] = 0.0  # what smart_nmf leaves outside its channels
    assert score(s, quantify=False).mean_angle > 0.1
    s.metadata.set_item("SmartNMF.channels", [5, 120])
    res = score(s, quantify=False)
    np.testing.assert_allclose(res.angles, 0.0, atol=1e-5)
    assert any("fitted channels 5–119" in n for n in res.notes)


def test_score_with_quantification(fitted):
    s, _, _ = fitted
    # components are (ferropericlase, Ca-perovskite, bridgmanite); quantify_phases names them
    est = {
        "phase 0": {"Mg": 41.0, "Fe": 9.0, "O": 50.0},
        "phase 1": {"Ca": 20.0, "Si": 20.0, "O": 60.0},
        "phase 2": {"Mg": 20.0, "Si": 22.0, "O": 58.0},
    }
    s.quantify_phases = lambda: SimpleNamespace(atomic_percent=est)
    res = score(s)
    assert res.composition_errors["ferropericlase"] == pytest.approx(
        {"Mg": 1.0, "Fe": 1.0, "O": 0.0}
    )
    assert res.composition_errors["bridgmanite"] == pytest.approx({"Mg": 0, "Si": 2, "O": 2})
    assert res.mean_composition_error == pytest.approx(6 / 9)


def test_score_noisy_maps_and_cropped_axis(fitted):
    s, _, order = fitted
    truth_maps = s.metadata.ESMPY_truth.maps
    rng = np.random.default_rng(5)
    noisy = np.clip(truth_maps[order] + 0.05 * rng.standard_normal(truth_maps.shape), 0, None)
    s.learning_results.loadings = noisy.reshape(3, -1).T
    res = score(s)
    assert 0 < res.mean_mse < 0.01
    # a fit of a cropped signal is compared with the truth on the same channels
    c = s.isig[10:]
    c.learning_results.factors = s.learning_results.factors[10:]
    c.learning_results.loadings = s.learning_results.loadings
    res_c = score(c)
    np.testing.assert_allclose(res_c.angles, 0.0, atol=1e-5)


def test_score_needs_truth_and_results():
    from esmpy_hs.datasets import make_signal, reference_maps, simulate

    with pytest.raises(ValueError, match="ground truth"):
        score(make_signal(np.zeros((2, 2, 5), dtype=np.uint16)))
    s = simulate(np.ones((3, 10)), reference_maps((4, 4)), dose=5, random_state=0)
    with pytest.raises(ValueError, match="decomposition"):
        score(s)


def test_score_after_smart_nmf():
    # end to end with the package's own fit (short and small: only the plumbing is checked)
    from esmpy_hs.datasets import REFERENCE_PHASES, reference_sample

    s = reference_sample(shape=(16, 16), dose=293, random_state=1)
    s.decomposition(algorithm="smart_nmf", output_dimension=3, max_iter=20, print_info=False)
    res = score(s)
    assert res.phase_names == list(REFERENCE_PHASES)
    assert sorted(res.permutation) == [0, 1, 2]
    assert np.all((res.angles >= 0) & (res.angles <= 90))
    assert np.all(np.isfinite(res.mse))
    assert set(res.composition_errors) == set(REFERENCE_PHASES)
    assert "Fe" in res.composition_errors["ferropericlase"]
    assert 0 <= res.mean_composition_error < 100

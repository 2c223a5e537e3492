"""estimate_n_phases: the number of phases from held-out counts, on the project's simulator."""

import numpy as np
import pytest

from esmpy_hs.datasets import matrix_abundances, phase_spectra, simulate, sphere_map

#: phases of the small test maps: a matrix and up to four particles of distinct chemistry
POOL = {
    "matrix": {"Mg": 0.2, "Si": 0.2, "O": 0.6},
    "oxide": {"Fe": 0.45, "Mg": 0.1, "O": 0.45},
    "perovskite": {"Ca": 0.2, "Ti": 0.2, "O": 0.6},
    "corundum": {"Al": 0.4, "O": 0.6},
    "bunsenite": {"Ni": 0.5, "O": 0.5},
}
#: particle centres (row, col) on a 32 × 32 map
CENTRES = ((9.0, 9.0), (22.0, 22.0), (9.0, 23.0), (23.0, 9.0))
AXIS = {"energy_offset": 0.3, "energy_scale": 0.02, "channels": 500}


def k_phase_map(k: int, dose: float, seed: int, shape=(32, 32)):
    """A matrix and k − 1 particles (radius 6 px, pure at the centre) at ``dose`` counts/px."""
    names = list(POOL)[:k]
    comps = {n: POOL[n] for n in names}
    spectra = phase_spectra(comps, continuum=np.tile([2e-4, 5e-4], (k, 1)), **AXIS)
    if k == 1:
        maps = np.ones((1, *shape))
    else:
        scale = shape[0] / 32
        parts = [sphere_map(shape, (r * scale, c * scale), 6.0 * scale, 1.0)
                 for r, c in CENTRES[: k - 1]]  # fmt: skip
        maps = matrix_abundances(np.array(parts))
    return simulate(spectra, maps, dose=dose, random_state=seed, compositions=comps,
                    phase_names=names, energy_offset=AXIS["energy_offset"],
                    energy_scale=AXIS["energy_scale"])  # fmt: skip


def test_one_phase_map_gives_one():
    s = k_phase_map(1, 100.0, seed=0)
    assert s.estimate_n_phases(4, n_splits=2, print_info=False) == 1
    node = s.metadata.SmartNMF_n_phases
    assert list(node.ks) == [1, 2, 3, 4] and node.k == 1
    assert node.scores.shape == (2, 4)


# measured with benchmarks/bench_n_phases.py --sim (k = 2 … 5 at 100 and 300 counts/px, seeds
# 1–3): 24 of 24 right (docs/choosing.rst). The test runs one other seed and k = 2 … 4 (six maps,
# max_phases = 5) and asserts at least five of the six.
def test_simulated_maps_give_the_true_k():
    got = {}
    for k in (2, 3, 4):
        for dose in (100.0, 300.0):
            s = k_phase_map(k, dose, seed=11)
            got[(k, dose)] = s.estimate_n_phases(5, n_splits=3, print_info=False)
    right = sum(v == k for (k, _), v in got.items())
    assert right >= 5, got


def test_curve_in_metadata_and_plot(tmp_path):
    s = k_phase_map(2, 300.0, seed=3)
    k = s.estimate_n_phases(3, n_splits=2, print_info=False, plot=True)
    node = s.metadata.SmartNMF_n_phases
    assert k == node.k and node.deviance.shape == (3,) and node.deviance_se.shape == (3,)
    assert not s.metadata.has_item("SmartNMF")  # not inside the fit record
    assert node.explained[0] == 0 and node.explained.max() == pytest.approx(1.0)
    from esmpy_hs.signals._nphases import plot_n_phases

    fig = plot_n_phases(s, filename=tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert fig.axes[0].get_xlabel() == "number of phases k"
    # the node survives a save and load
    import hyperspy.api as hs

    s.save(tmp_path / "m.hspy")
    t = hs.load(tmp_path / "m.hspy")
    assert t.metadata.SmartNMF_n_phases.k == k


def test_refuses_bad_arguments():
    s = k_phase_map(2, 100.0, seed=0)
    with pytest.raises(ValueError, match="max_phases"):
        s.estimate_n_phases(0)
    with pytest.raises(TypeError, match="sets shape_2d"):
        s.estimate_n_phases(3, shape_2d=(2, 2))
    t = s.deepcopy()
    t.data = t.data.astype(float) + 0.5
    with pytest.raises(ValueError, match="integer counts"):
        t.estimate_n_phases(2, print_info=False)


def test_spectra_from_blocks_is_accepted():
    """The options are checked with the map's grid, as in decomposition: the low-dose mode can
    be asked for (it was refused as if the map had no grid)."""
    s = k_phase_map(2, 100.0, seed=0)
    assert s.estimate_n_phases(2, n_splits=1, print_info=False, spectra_from="blocks") in (1, 2)


def test_split_uncertainty_adds_the_spread_of_refits():
    s = k_phase_map(2, 300.0, seed=4)
    s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False, max_iter=60)
    q0 = s.quantify_phases()
    q = s.quantify_phases(uncertainty="splits", n_splits=2)
    np.testing.assert_allclose(q.atomic_fractions, q0.atomic_fractions)
    np.testing.assert_allclose(q.counting_atomic_errors, q0.atomic_errors)
    np.testing.assert_allclose(q.atomic_errors,
                               np.hypot(q0.atomic_errors, q.split_atomic_errors))  # fmt: skip
    # the refits move: some spread on the major elements, and not absurdly large (at.%)
    major = q.atomic_fractions > 0.1
    assert np.all(q.split_atomic_errors[major] > 0)
    assert np.all(q.split_atomic_errors[major] < 0.05)
    node = s.metadata.SmartNMF_uncertainty
    assert node.n_splits == 2 and node.split_atomic_errors.shape == q.atomic_fractions.shape
    with pytest.raises(ValueError, match="uncertainty must be"):
        s.quantify_phases(uncertainty="bootstrap")


# warm starts (each k from the k − 1 fit plus the pixels it explains worst) must not change the
# answer: on the simulator the warm and the cold curves suggest the same k
@pytest.mark.parametrize(("k", "dose", "seed"), [(3, 300.0, 5), (4, 100.0, 6)])
def test_warm_starts_suggest_the_same_k_as_cold(k, dose, seed):
    s = k_phase_map(k, dose, seed)
    warm = s.estimate_n_phases(k + 1, n_splits=2, print_info=False, warm_start=True)
    assert s.metadata.SmartNMF_n_phases.warm_start
    cold = s.estimate_n_phases(k + 1, n_splits=2, print_info=False)
    assert warm == cold == k


def test_add_phase_keeps_the_previous_phases_and_the_sum_constraint():
    from esmpy_hs.signals._nphases import add_phase, prepare

    s = k_phase_map(3, 300.0, seed=2)
    ho = prepare(s)
    prev = ho.estimator(2, max_iter=30)
    prev.fit(ho.X)
    W, H = add_phase(ho.model, prev, ho.X)
    assert W.shape == (prev.W_.shape[0], 3) and H.shape == (3, ho.X.shape[0])
    np.testing.assert_array_equal(W[:, :2], prev.W_)
    np.testing.assert_allclose(H.sum(axis=0), prev.H_.sum(axis=0))
    assert np.all(W >= 0)
    # the new phase starts where the two-phase fit is worst: inside a particle of the map
    from esmpy_hs.datasets import get_truth

    maps = np.asarray(get_truth(s)["maps"]).reshape(3, -1)
    chosen = H[2] == H[2].max()
    assert chosen.sum() >= 1 and np.all(maps[1:, chosen].sum(axis=0) > 0.5)


def test_gain_rule_and_options_are_recorded():
    from esmpy_hs.signals._nphases import MIN_GAIN_SHARE, gain_candidates

    # a curve whose k = 4 and 5 beat k = 3 by less than 5 % of the whole improvement
    mean = np.array([1.0, 0.40, 0.10, 0.095, 0.09, 0.12])
    assert list(gain_candidates(mean)) == [True, True, True, False, False, False]
    # a later k that improves enough is a candidate again
    assert gain_candidates(np.array([1.0, 0.4, 0.39, 0.1]))[3]
    assert MIN_GAIN_SHARE == 0.05
    s = k_phase_map(2, 300.0, seed=3)
    s.estimate_n_phases(3, n_splits=2, print_info=False)
    node = s.metadata.SmartNMF_n_phases
    assert list(node.candidates[:2]) == [True, True] and not node.warm_start
    with pytest.raises(ValueError, match="rule must be"):
        s.estimate_n_phases(2, rule="aic", print_info=False)
    with pytest.raises(ValueError, match="score must be"):
        s.estimate_n_phases(2, score="bins", print_info=False)

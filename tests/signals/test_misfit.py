"""The model-misfit statistics (esmpy_hs.signals._misfit): the excess sandwich σ and the
dispersion at the detector's resolution, on spectra and maps whose misfit is known."""

import warnings

import numpy as np
import pytest

from esmpy_hs.datasets import matrix_abundances, phase_spectra, simulate, sphere_map
from esmpy_hs.physics import Detector
from esmpy_hs.signals import _misfit as mf
from esmpy_hs.signals._model_check import UnexplainedCountsWarning
from tests.signals.test_n_phases import AXIS, CENTRES, POOL

E = np.arange(0.2, 10.0, 0.01)  # keV
PEAKS = (1.25, 1.74, 6.40)  # keV: three lines


def _columns(fwhm_scale: float = 1.0) -> np.ndarray:
    """(channels, 4) three Gaussian lines of the detector's FWHM (× ``fwhm_scale``) and a flat
    continuum, each column summing to 1."""
    det = Detector()
    cols = []
    for p in PEAKS:
        sd = fwhm_scale * float(det.fwhm(p)) / 2.3548
        cols.append(np.exp(-0.5 * ((E - p) / sd) ** 2))
    cols.append(np.ones_like(E))
    G = np.array(cols).T
    return G / G.sum(axis=0)


def _poisson_fit(G: np.ndarray, y: np.ndarray, n_iter: int = 3000) -> np.ndarray:
    """Poisson maximum likelihood of a ≥ 0 (multiplicative updates)."""
    a = np.full(G.shape[1], y.sum() / G.shape[1])
    norm = G.sum(axis=0)
    for _ in range(n_iter):
        a *= (G.T @ (y / np.maximum(G @ a, 1e-300))) / norm
    return a


def _blocks() -> np.ndarray:
    return mf.fwhm_blocks(E, Detector().fwhm(E))


def test_blocks_are_one_fwhm_wide():
    fwhm = Detector().fwhm(E)
    lab = _blocks()
    assert lab[0] == 0 and np.all(np.diff(lab) >= 0) and np.all(np.diff(lab) <= 1)
    for b in np.unique(lab)[:-1]:
        ch = np.nonzero(lab == b)[0]
        span = E[ch[-1] + 1] - E[ch[0]]  # to the start of the next block
        assert fwhm[ch[0]] <= span < fwhm[ch[0]] + 0.01 + 1e-9
    # about ∫ dE / FWHM blocks over the axis
    assert abs(lab[-1] + 1 - np.sum(0.01 / fwhm)) < 0.1 * np.sum(0.01 / fwhm) + 2


def test_fraction_variance_matches_draws():
    rng = np.random.default_rng(0)
    L = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0.7, 0.3]])  # a split-like third row
    a = np.array([40.0, 25.0, 10.0, 30.0])
    A = rng.normal(size=(4, 4)) * 0.3
    V = A @ A.T
    draws = rng.multivariate_normal(a, V, size=200_000)
    n = draws @ L.T
    c = n / n.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(mf.fraction_variance(L, a, V), c.var(axis=0), rtol=0.03)


def test_excess_is_zero_on_average_when_the_model_made_the_counts():
    """y ~ Poisson(G a): dispersion ≈ 1 and the excess covariance ≈ 0 next to the Fisher one."""
    G = _columns()
    a_true = np.array([3e4, 2e4, 1e4, 2e5])
    rng = np.random.default_rng(1)
    phis, ratios = [], []
    for _ in range(20):
        y = rng.poisson(G @ a_true).astype(float)
        a = _poisson_fit(G, y)
        mu = G @ a
        V = mf.misfit_covariance(G, a, y, mu, _blocks())
        fisher = np.linalg.inv(G.T @ (G / mu[:, None]))
        ratios.append(np.diag(V) / np.diag(fisher))
        phis.append(mf.dispersion(G, a, y, mu, _blocks()))
    n_blocks = _blocks().max() + 1
    assert abs(np.mean(phis) - 1.0) < 4 * np.sqrt(2.0 / n_blocks / 20)
    # the mean excess is zero within 3 standard errors (20 spectra), column by column
    ratios = np.array(ratios)
    assert np.all(np.abs(ratios.mean(axis=0)) < 3 * ratios.std(axis=0) / np.sqrt(20))
    assert np.all(ratios.std(axis=0) < 1.5)  # and it is not a noisy number of any size


def test_excess_of_a_fixed_misfit_is_a_fraction_of_the_amounts_at_any_dose():
    """Lines 20 % wider than the model's, no noise: the misfit σ of the amounts is the same
    fraction of them at 10⁶ and 10⁸ counts (a bias does not shrink with dose), while the Fisher
    σ shrinks as 1/√counts; the dispersion grows in proportion to the dose."""
    G_fit, G_true = _columns(), _columns(1.2)
    shares = np.array([0.15, 0.10, 0.05, 0.70])
    rel, fisher_rel, phi = [], [], []
    for total in (1e6, 1e8):
        y = G_true @ (total * shares)
        a = _poisson_fit(G_fit, y)
        mu = G_fit @ a
        V = mf.misfit_covariance(G_fit, a, y, mu, _blocks())
        rel.append(np.sqrt(np.diag(V))[:3] / a[:3])
        fisher_rel.append(np.sqrt(np.diag(np.linalg.inv(G_fit.T @ (G_fit / mu[:, None]))))[:3]
                          / a[:3])  # fmt: skip
        phi.append(mf.dispersion(G_fit, a, y, mu, _blocks()))
    np.testing.assert_allclose(rel[0], rel[1], rtol=0.05)
    np.testing.assert_allclose(fisher_rel[0] / fisher_rel[1], 10.0, rtol=0.01)
    assert np.all(rel[1] > 5 * fisher_rel[1])
    assert np.all(rel[0] > 0.001)  # the misfit is seen: a fraction of a per cent or more
    np.testing.assert_allclose(phi[1] / phi[0], 100.0, rtol=0.05)


def test_amounts_at_their_bound_get_no_variance():
    G = _columns()
    y = G @ np.array([3e4, 0.0, 1e4, 2e5])
    a = np.array([3e4, 0.0, 1e4, 2e5])
    V = mf.misfit_covariance(G, a, y * 1.01, G @ a, _blocks())
    assert np.all(V[1] == 0) and np.all(V[:, 1] == 0)


def _map(resolution: float, seed: int = 0):
    """The 2-phase 32 × 32 test map at 300 counts/px made with lines of ``resolution`` eV at
    Mn Kα, with 130 eV in its metadata."""
    names = list(POOL)[:2]
    comps = {n: POOL[n] for n in names}
    spectra = phase_spectra(comps, continuum=np.tile([2e-4, 5e-4], (2, 1)),
                            energy_resolution_MnKa=resolution, **AXIS)  # fmt: skip
    maps = matrix_abundances(np.array([sphere_map((32, 32), CENTRES[0], 6.0, 1.0)]))
    s = simulate(spectra, maps, dose=300.0, random_state=seed, compositions=comps,
                 phase_names=names, energy_offset=AXIS["energy_offset"],
                 energy_scale=AXIS["energy_scale"])  # fmt: skip
    s.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa", 130.0)
    # calibrate=False keeps the stated width: the mismatch is not calibrated away (the model
    # check may see the mismatch as unexplained counts: not what is tested here)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnexplainedCountsWarning)
        s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False,
                        max_iter=60, calibrate=False)  # fmt: skip
    q = s.quantify_phases()
    return s, q


@pytest.fixture(scope="module")
def fits():
    return {res: _map(res) for res in (130.0, 140.0, 150.0)}


def test_map_with_the_exact_model_has_a_small_misfit(fits):
    s, q = fits[130.0]
    mis_at, mis_wt, phi = mf.misfit_errors(s)
    assert mis_at.shape == q.atomic_fractions.shape == mis_wt.shape
    assert np.all(phi < 3.0)
    major = q.atomic_fractions >= 0.1
    assert np.all(mis_at[major] <= 1.5 * q.atomic_errors[major])
    assert np.all(mis_at[major] < 0.005)  # fractions: below 0.5 at.%


def test_map_with_a_width_law_mismatch_has_a_large_misfit(fits):
    q = fits[130.0][1]
    major = q.atomic_fractions >= 0.1
    mis = {res: mf.misfit_errors(fits[res][0]) for res in (140.0, 150.0)}
    at150, wt150, phi150 = mis[150.0]
    assert np.all(phi150 > 10.0)
    ratio = at150[major] / fits[150.0][1].atomic_errors[major]
    assert np.all(ratio > 2.0) and np.median(ratio) > 5.0
    assert np.all((at150 >= 0) & (at150 < 0.2)) and np.all((wt150 >= 0) & (wt150 < 0.2))
    # the larger the mismatch, the larger the term
    assert np.median(mis[140.0][0][major]) < np.median(at150[major])
    assert np.all(mis[140.0][2] < phi150)

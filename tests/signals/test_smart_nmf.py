"""decomposition(algorithm="smart_nmf") through the HyperSpy API only."""

from __future__ import annotations

import hashlib

import hyperspy.api as hs
import numpy as np
import pytest

from esmpy_hs.physics import build_G, simulate_spectrum
from esmpy_hs.signals import EDSespm

ELEMENTS = ["Fe", "Mg", "O", "Si", "Ca"]
TRUTH = {
    "matrix": {"Mg": 0.20, "Fe": 0.04, "Si": 0.20, "O": 0.56},
    "oxide": {"Mg": 0.45, "Fe": 0.10, "O": 0.45},
    "perovskite": {"Ca": 0.20, "Si": 0.20, "O": 0.60},
}
CONTINUUM = (3e-4, 6e-4)
SHAPE = (24, 24)
FIT: dict = {}  # the defaults
OFFSET, SCALE, SIZE = 0.2, 0.01, 1000  # keV: 0.2 – 10.2 keV


def _maps(shape=SHAPE) -> np.ndarray:
    """Three abundance maps summing to 1: a matrix with two particles (pure cores, mixed rims)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)

    def particle(cy, cx):
        r = np.hypot(yy - cy, xx - cx)
        return np.clip((0.28 - r) / 0.12, 0, 1)  # 1 inside r < 0.16, 0 beyond r = 0.28

    a, b = particle(0.3, 0.3), particle(0.72, 0.68)
    m = np.clip(1 - a - b, 0, 1)
    maps = np.stack([m, a, b])
    return maps / maps.sum(0)


def _spectra(axis=(OFFSET, SCALE, SIZE)) -> np.ndarray:
    """Expected spectra (k × channels), each of unit sum, from the physics model."""
    model = build_G(axis, 200, ELEMENTS)
    out = []
    for comp in TRUTH.values():
        s = simulate_spectrum(comp, model, continuum=CONTINUUM)
        out.append(s / s.sum())
    return np.array(out)


def make_map(dose=300.0, seed=0, shape=SHAPE, units="keV") -> EDSespm:
    """A simulated 3-phase map (integer counts) with complete metadata."""
    maps = _maps(shape)
    spectra = _spectra()
    lam = np.einsum("kyx,kc->yxc", maps, spectra) * dose
    data = np.random.default_rng(seed).poisson(lam).astype(np.uint16)
    s = hs.signals.Signal1D(data)
    ax = s.axes_manager.signal_axes[0]
    factor = 1000.0 if units == "eV" else 1.0
    ax.offset, ax.scale, ax.units, ax.name = OFFSET * factor, SCALE * factor, units, "Energy"
    s.set_signal_type("EDS_ESMPY")
    s.set_microscope_parameters(beam_energy=200.0, energy_resolution_MnKa=130.0)
    s.add_elements(ELEMENTS)
    s.metadata.set_item("General.title", "simulated")
    return s


def _angle(a, b) -> float:
    c = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def _match(factors: np.ndarray, spectra: np.ndarray) -> list[int]:
    from scipy.optimize import linear_sum_assignment

    cost = np.array([[_angle(t, f) for f in factors.T] for t in spectra])
    return list(linear_sum_assignment(cost)[1])


def _digest(s) -> str:
    h = hashlib.sha256(np.ascontiguousarray(s.data).tobytes())
    md = s.metadata.as_dictionary()
    md.pop("SmartNMF", None)
    h.update(repr(sorted(md.items(), key=lambda kv: kv[0])).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def fitted():
    s = make_map()
    before = _digest(s)
    dtype = s.data.dtype
    s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False, **FIT)
    return s, before, dtype


def test_recovers_spectra_and_compositions(fitted):
    s, _, _ = fitted
    factors = s.learning_results.factors
    assert factors.shape == (SIZE, 3)
    truth = _spectra()
    order = _match(factors, truth)
    angles = [_angle(truth[i], factors[:, j]) for i, j in enumerate(order)]
    assert max(angles) < 3.0, angles
    q = s.quantify_phases()
    names = q.phase_names
    for (phase, comp), j in zip(TRUTH.items(), order, strict=True):
        est = q.atomic_percent[names[j]]
        for el in ELEMENTS:
            true = 100 * comp.get(el, 0.0)
            if true >= 5:
                assert est[el] == pytest.approx(true, abs=1.5), (phase, el, est)
        err = q.atomic_percent_error[names[j]]
        assert all(v >= 0 for v in err.values())
        assert sum(est.values()) == pytest.approx(100.0)


def test_loadings_and_hyperspy_views(fitted):
    s, _, _ = fitted
    loadings = s.learning_results.loadings
    assert loadings.shape == (SHAPE[0] * SHAPE[1], 3)
    np.testing.assert_allclose(loadings.sum(axis=1), 1.0, atol=1e-6)  # H simplex (default)
    f = s.get_decomposition_factors()
    assert isinstance(f, EDSespm)
    assert f.axes_manager.signal_axes[0].units == "keV"
    assert f.axes_manager.signal_axes[0].offset == pytest.approx(OFFSET)
    maps = s.get_decomposition_loadings()
    assert maps.data.shape == (3, *SHAPE)
    model = s.get_decomposition_model()
    assert model.data.shape == s.data.shape
    # the model reproduces the counts: totals agree to 1 %
    assert model.data.sum() == pytest.approx(s.data.sum(), rel=0.01)
    s.plot_decomposition_results()
    import matplotlib.pyplot as plt

    plt.close("all")


def test_input_untouched(fitted):
    s, before, dtype = fitted
    assert s.data.dtype == dtype
    assert _digest(s) == before
    assert s.metadata.Signal.signal_type == "EDS_ESMPY"


def test_round_trip_gives_identical_quantification(fitted, tmp_path):
    s, _, _ = fitted
    fname = tmp_path / "fit.hspy"
    s.save(fname)
    r = hs.load(fname)
    assert type(r) is EDSespm
    assert r.learning_results.decomposition_algorithm == "smart_nmf"
    np.testing.assert_array_equal(r.learning_results.factors, s.learning_results.factors)
    q0, q1 = s.quantify_phases(), r.quantify_phases()
    assert q1.atomic_percent == q0.atomic_percent
    assert q1.atomic_percent_error == q0.atomic_percent_error
    assert q1.weight_percent == q0.weight_percent
    assert r.metadata.SmartNMF.stop_reason in ("converged", "max_iter")
    assert r.metadata.SmartNMF.n_iter > 0
    assert r.metadata.SmartNMF.lambda_L == s.metadata.SmartNMF.lambda_L > 0
    assert r.metadata.SmartNMF.spectra_from == s.metadata.SmartNMF.spectra_from
    assert r.metadata.SmartNMF.spectra_from in ("pixels", "blocks")


def test_table_prints(fitted):
    s, _, _ = fitted
    text = str(s.quantify_phases())
    assert "phase 0" in text and "at.%" in text and "wt.%" in text and "±" in text


def test_failed_fit_leaves_signal_untouched():
    s = make_map(dose=50)
    before = _digest(s)
    with pytest.raises(ValueError, match="simplex"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, simplex="bad",
                        print_info=False)  # fmt: skip
    assert _digest(s) == before
    assert "SmartNMF" not in s.metadata


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("Acquisition_instrument.TEM.beam_energy", "set_microscope_parameters(beam_energy"),
        ("Sample.elements", "add_elements"),
        (
            "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
            "set_microscope_parameters(energy_resolution_MnKa",
        ),
    ],
)
def test_missing_metadata_names_the_field(path, hint):
    s = make_map(dose=20)
    parent, _, leaf = path.rpartition(".")
    delattr(s.metadata.get_item(parent), leaf)
    assert not s.metadata.has_item(path)
    with pytest.raises(ValueError) as info:
        s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False)
    msg = str(info.value)
    assert path.rsplit(".", 1)[-1] in msg and hint in msg
    assert "SmartNMF" not in s.metadata


def test_thickness_needs_density():
    s = make_map(dose=20)
    s.metadata.set_item("Sample.thickness", "80 nm")
    with pytest.raises(ValueError, match=r"Sample\.density"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False)


def test_no_thickness_prints_a_notice(capsys):
    s = make_map(dose=20, shape=(6, 6))
    s.decomposition(algorithm="smart_nmf", output_dimension=2, max_iter=5, progress=False)
    out = capsys.readouterr().out
    assert "without absorption correction" in out


def test_oxygen_outside_the_axis_is_reported():
    s = make_map(dose=100, shape=(8, 8))
    s.crop_signal(0.83, None)
    with pytest.warns(UserWarning, match="O"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, max_iter=20,
                        print_info=False)  # fmt: skip
    labels = list(s.metadata.SmartNMF.labels)
    assert "O" not in labels and "Fe" in labels
    assert "O" not in s.quantify_phases().elements


def test_eV_axis_gives_the_same_result():
    kw = dict(output_dimension=3, max_iter=30, tol=0, print_info=False)
    s_kev = make_map(dose=100, shape=(10, 10))
    s_ev = make_map(dose=100, shape=(10, 10), units="eV")
    np.testing.assert_array_equal(s_kev.data, s_ev.data)
    s_kev.decomposition(algorithm="smart_nmf", **kw)
    s_ev.decomposition(algorithm="smart_nmf", **kw)
    np.testing.assert_allclose(s_ev.learning_results.factors, s_kev.learning_results.factors,
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    q_ev, q_kev = s_ev.quantify_phases(), s_kev.quantify_phases()
    np.testing.assert_allclose(q_ev.atomic_fractions, q_kev.atomic_fractions, rtol=1e-9)


def test_priors_zero_entries_and_complete_composition():
    s = make_map(dose=300, shape=(16, 16))
    phases = {
        "perovskite": {"Ca": 0.2, "Si": 0.2, "O": 0.6},
        "oxide": {"Si": 0, "Ca": 0},
    }
    s.decomposition(algorithm="smart_nmf", output_dimension=3, phases=phases, max_iter=200,
                    print_info=False)  # fmt: skip
    q = s.quantify_phases()
    assert q.phase_names == ["perovskite", "oxide", "phase 2"]
    at = q.atomic_percent
    assert at["perovskite"]["Ca"] == pytest.approx(20.0, abs=1e-6)
    assert at["perovskite"]["O"] == pytest.approx(60.0, abs=1e-6)
    assert at["perovskite"]["Fe"] == 0.0
    assert at["oxide"]["Si"] == 0.0 and at["oxide"]["Ca"] == 0.0
    assert at["oxide"]["Mg"] > 30


def test_partial_priors_need_the_W_simplex():
    s = make_map(dose=50, shape=(8, 8))
    with pytest.raises(ValueError, match="simplex='W'"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, simplex="H",
                        phases={"a": {"Fe": 0.1}}, print_info=False)  # fmt: skip
    s.decomposition(algorithm="smart_nmf", output_dimension=2, phases={"a": {"Fe": 0.1}},
                    max_iter=30, print_info=False)  # fmt: skip
    assert s.quantify_phases().atomic_percent["a"]["Fe"] == pytest.approx(10.0, abs=1e-6)


def test_bad_priors():
    s = make_map(dose=20, shape=(6, 6))
    with pytest.raises(ValueError, match="Zn"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, phases={"a": {"Zn": 0.5}},
                        print_info=False)  # fmt: skip
    with pytest.raises(ValueError, match="3 phases"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, phases=["a", "b", "c"],
                        print_info=False)  # fmt: skip
    with pytest.raises(ValueError, match="output_dimension"):
        s.decomposition(algorithm="smart_nmf", print_info=False)


def test_other_algorithms_pass_through():
    s = make_map(dose=50, shape=(6, 6))
    s.change_dtype("float64")
    s.decomposition(algorithm="SVD", output_dimension=3, navigation_mask=None,
                    print_info=False)  # fmt: skip
    assert s.learning_results.decomposition_algorithm == "SVD"
    assert s.learning_results.factors.shape[0] == SIZE


def test_absorption_correction_uses_the_specimen_fields():
    """With a thickness, light elements absorbed in the specimen are corrected upwards."""
    import json

    kw = dict(output_dimension=3, max_iter=60, tol=0, print_info=False)
    plain = make_map(dose=200, shape=(12, 12))
    plain.decomposition(algorithm="smart_nmf", **kw)
    thick = make_map(dose=200, shape=(12, 12))
    thick.metadata.set_item("Sample.thickness", "100 nm")
    thick.metadata.set_item("Sample.density", 4.5)
    thick.decomposition(algorithm="smart_nmf", **kw)
    specimen = json.loads(thick.metadata.SmartNMF.model)["specimen"]
    assert specimen["thickness"] == pytest.approx(100.0)
    assert specimen["density"] == pytest.approx(4.5)
    assert specimen["take_off_angle"] == pytest.approx(thick.get_take_off_angle())
    o_plain = plain.quantify_phases().atomic_fractions[plain.quantify_phases().elements.index("O")]
    q = thick.quantify_phases()
    o_thick = q.atomic_fractions[q.elements.index("O")]
    assert np.all(np.sort(o_thick) > np.sort(o_plain))


def test_fit_record_round_trip(fitted, tmp_path):
    from esmpy_hs.signals._record import read_record

    s, _, _ = fitted
    s.save(tmp_path / "rec.hspy")
    a, b = read_record(s), read_record(hs.load(tmp_path / "rec.hspy"))
    for name in ("W", "H_sums", "loss_history"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("labels", "phase_names", "model", "channels", "parameters", "n_iter",
                 "stop_reason", "init_note", "lambda_L", "spectra_from"):  # fmt: skip
        assert getattr(a, name) == getattr(b, name), name
    assert a.k == 3 and a.parameters["shape_2d"] == list(SHAPE)


def test_unknown_or_bad_option_fails_before_the_model_is_built(monkeypatch):
    from esmpy_hs.signals import _decomposition

    s = make_map(dose=20, shape=(6, 6))
    before = s.metadata.as_dictionary()

    def no_model(*args, **kwargs):
        raise AssertionError("the physics model was built before the options were checked")

    monkeypatch.setattr(_decomposition, "build_model", no_model)
    with pytest.raises(TypeError, match=r"unexpected keyword.*lamda_L.*lambda_L"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, lamda_L=1.0)
    with pytest.raises(TypeError, match="G"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, G=np.ones((3, 3)))
    with pytest.raises(ValueError, match="mu must be"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, mu=-1)
    with pytest.raises(ValueError, match="absorption_every"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, absorption_every=0)
    assert s.metadata.as_dictionary() == before
    assert s.learning_results.factors is None


def test_smart_nmf_options_refused_for_other_algorithms():
    s = make_map(dose=20, shape=(6, 6))
    with pytest.raises(TypeError, match=r"elements apply to algorithm='smart_nmf' only"):
        s.decomposition(algorithm="SVD", elements=["Fe"])
    s.change_dtype("float64")
    s.decomposition(algorithm="SVD", output_dimension=2, print_info=False)
    assert s.learning_results.decomposition_algorithm == "SVD"


def test_spectra_from_blocks_can_be_asked_for_on_a_map():
    """The grid smart_nmf passes is part of the option check: ``spectra_from="blocks"`` on a
    2-D map is accepted (it was refused as if the map had no grid), and a random start with it
    is still refused before any work."""
    s = make_map(dose=20, shape=(16, 16))
    s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False,
                    spectra_from="blocks", max_iter=20)  # fmt: skip
    assert s.metadata.SmartNMF.spectra_from == "blocks"
    with pytest.raises(ValueError, match="spectra_from='blocks'"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, spectra_from="blocks",
                        init="random")  # fmt: skip


def test_smoothing_of_the_model_counts_through_the_signal(capsys):
    """``smoothing="model"`` reaches the estimator from ``decomposition``: the fit recovers the
    phases, says which smoothing it used, and keeps the request in the stored parameters;
    where the spectra are held from the blocks it says it used the shares' Laplacian; a lazy
    signal is refused before its data are read."""
    s = make_map(dose=300.0)
    s.decomposition(algorithm="smart_nmf", output_dimension=3, smoothing="model")
    out = capsys.readouterr().out
    assert "smoothing of the model counts" in out
    import json

    assert json.loads(s.metadata.SmartNMF.parameters)["smoothing"] == "model"
    factors = np.asarray(s.learning_results.factors).T  # k × channels
    spectra = _spectra()
    order = _match(factors.T, spectra)
    angles = [_angle(spectra[i], factors[j]) for i, j in enumerate(order)]
    assert max(angles) < 3.0, angles
    low = make_map(dose=20.0, shape=(16, 16))
    low.decomposition(algorithm="smart_nmf", output_dimension=3, smoothing="model",
                      max_iter=20)  # fmt: skip
    assert "the shares' Laplacian was used" in capsys.readouterr().out
    lazy = make_map(dose=20.0, shape=(8, 8)).as_lazy()
    before = lazy.metadata.as_dictionary()
    with pytest.raises(ValueError, match="in-memory fits"):
        lazy.decomposition(algorithm="smart_nmf", output_dimension=2, smoothing="model")
    assert lazy.metadata.as_dictionary() == before

"""The model check's test of each listed element's presence and its flag in the phase tables
(issue #13, honest phase tables)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from esmpy_hs.datasets import reference_sample
from esmpy_hs.physics.composition import Quantification, mark_not_detected
from tests.conftest import SHARED

MAJORS = ("Mg", "Si", "O", "Fe", "Ca", "Al")


def _fit(s, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                        max_iter=40, **kw)  # fmt: skip
    return json.loads(s.metadata.SmartNMF.model_check)["listed"]


def test_absent_listed_element_is_flagged_and_majors_are_not():
    """Zr is not in the reference sample: listed, its lines are not needed anywhere; the
    majors are needed on the map."""
    s = reference_sample(dose=293, shape=(32, 32))
    s.add_elements(["Zr"])
    listed = _fit(s)
    assert listed["map"]["Zr"] <= listed["threshold"]
    for el in MAJORS:
        assert listed["map"][el] > listed["threshold"], el
    assert listed["not_detected"] and all("Zr" in v for v in listed["not_detected"].values())
    q = s.quantify_phases()
    assert all("Zr" in q.not_detected[name] for name in q.phase_names if name not in q.undetermined)
    text = q.table()
    assert "Zr (T ≤ " in text and "not detected" in text
    # shown as "—", the others renormalised to 100 %
    for name in q.phase_names:
        if name in q.undetermined:
            continue
        at = q.atomic_percent[name]
        assert at["Zr"] == 0.0
        assert sum(at.values()) == pytest.approx(100.0, abs=1e-6)
    csv_rows = [r.split(",") for r in q.to_csv().splitlines()[1:]]
    assert all(r[2] == "" for r in csv_rows if r[1] == "Zr")


def test_record_round_trip_and_older_records():
    from esmpy_hs.signals._record import read_record

    s = reference_sample(dose=293, shape=(24, 24))
    s.add_elements(["Zr"])
    _fit(s)
    rec = read_record(s)
    assert "Zr" in rec.model_check["listed"]["map"]
    q = rec.quantification()
    assert any("Zr" in v for v in q.not_detected.values())
    # a record written before the presence test (no "listed"): nothing marked, no error
    check = dict(rec.model_check)
    del check["listed"]
    s.metadata.SmartNMF.model_check = json.dumps(check)
    assert read_record(s).quantification().not_detected == {}


def test_mark_not_detected_renormalises_and_prints_a_footer():
    at = np.array([[0.5, 0.2], [0.3, 0.5], [0.2, 0.3]])
    err = np.full_like(at, 0.01)
    q = Quantification(["N", "Rb", "V"], at.copy(), at.copy(), err.copy(), err.copy(),
                       np.ones_like(at), phase_names=["matrix", "particle"])  # fmt: skip
    mark_not_detected(q, {"matrix": {"N": 3.2}, "other": {"V": 1.0}})
    assert q.not_detected == {"matrix": {"N": 3.2}}
    assert q.atomic_fractions[0, 0] == 0.0
    assert q.atomic_fractions[1:, 0] == pytest.approx([0.6, 0.4])
    assert q.atomic_fractions[:, 1] == pytest.approx([0.2, 0.5, 0.3])  # untouched
    text = q.table()
    assert "matrix: N (T ≤ 3.2) not detected" in text
    assert text.splitlines()[1].split()[1] == "—"
    from esmpy_hs.plotting import _composition_text

    panel = _composition_text(q, 0, 8, [])
    assert "not detected: N" in panel and "Rb " in panel and "< 0.05" not in panel
    assert "not detected" not in _composition_text(q, 1, 8, [])


def test_other_simulator_matrix_nitrogen_is_flagged():
    """particles_N500_w1: the matrix (Rb/V/W, no N) took a broad low-energy excess of the other
    simulator's detector as N; the presence test does not need N there, and the matrix
    renormalised without it is close to the truth (Rb 88.8 at.%)."""
    import hyperspy.api as hs

    from esmpy_hs.physics import Detector

    path = SHARED / "data" / "independent" / "particles_N500_w1" / "sample.hspy"
    if not path.exists():
        pytest.skip(f"{path} not found")
    s = hs.load(path)
    s.set_signal_type("EDS_ESMPY")
    listed = _fit(s, detector=Detector(fwhm_model="linear"))
    assert listed["map"]["N"] > listed["threshold"]  # N is in the specimen (particles)
    q = s.quantify_phases()
    rb = np.nan_to_num(q.atomic_fractions[q.elements.index("Rb")])
    matrix = q.phase_names[int(np.argmax(rb))]
    assert "N" in q.not_detected[matrix]
    for el in ("Rb", "V", "W"):
        assert el not in q.not_detected.get(matrix, {})
    assert q.atomic_percent[matrix]["Rb"] > 80.0


def test_summed_by_labels_one_pass_equals_separate_sums():
    import scipy.sparse as sp

    from esmpy_hs.signals._identify import summed_by_labels

    rng = np.random.default_rng(3)
    X = rng.poisson(0.3, size=(3000, 40)).astype(np.float32)
    a, b = rng.integers(0, 3, 3000), rng.integers(0, 4, 3000)
    for data in (X, sp.csr_array(X)):
        (sa, sb), (na, nb) = summed_by_labels(data, [a, b], [3, 4])
        for lab, sums, n, m in ((a, sa, na, 3), (b, sb, nb, 4)):
            assert n.tolist() == [int((lab == j).sum()) for j in range(m)]
            want = np.stack([X[lab == j].sum(axis=0) for j in range(m)])
            assert np.allclose(sums, want)

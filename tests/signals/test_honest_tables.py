"""Phase tables that never print a number that means nothing (issue 13, honest tables)."""

from __future__ import annotations

import dataclasses
import re
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest

from esmpy_hs.physics.composition import (
    MIN_PHASE_SHARE,
    PURE_LEVEL,
    mark_never_pure,
    mark_undetermined,
    quantify_rows,
)
from esmpy_hs.signals._record import read_record, write_record

from .test_smart_nmf import make_map


def _numbers_with_errors(text: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(r"(-?[\d.]+) ± ([\d.]+)", text)]


def test_mark_undetermined_on_numbers():
    elements = ["Mg", "O", "Si"]
    W = np.array([[0.2, 0.2, 0.3], [0.6, 0.6, 0.3], [0.2, 0.2, 0.4]])
    S = np.ones(3)
    # a normal phase, a phase of 0.25 % of the abundance, and one whose element counts are
    # a fair share but too few to fix a composition (2 counts)
    H = np.array([40.0, 40.0, 2.0])
    q = quantify_rows(elements, W, S, H)
    q = mark_undetermined(q, np.array([1e5, 1e5 * MIN_PHASE_SHARE / 2, 1e5]))
    assert set(q.undetermined) == {"phase 1", "phase 2"}
    assert "abundance" in q.undetermined["phase 1"]
    assert "larger than its value" in q.undetermined["phase 2"]
    assert np.all(np.isfinite(q.atomic_fractions[:, 0]))
    assert np.all(np.isnan(q.atomic_fractions[:, 1:]))
    text = str(q)
    assert text.count("not determined") == 4  # two phases, in the at.% and wt.% tables
    assert all(err <= 100 for _, err in _numbers_with_errors(text))
    csv = q.to_csv()
    assert "phase 1,Mg,,,,," in csv


def test_mark_never_pure_lists_phases_below_the_level_and_tables_say_so():
    elements = ["Mg", "O", "Si"]
    W = np.array([[0.2, 0.5, 0.3], [0.6, 0.5, 0.3], [0.2, 0.0, 0.4]])
    q = quantify_rows(elements, W, np.ones(3), np.array([1e4, 1e4, 1e4]))
    q = mark_undetermined(q, np.array([1e5, 1e5 * MIN_PHASE_SHARE / 2, 1e5]))
    q = mark_never_pure(q, [1.0, 0.3, PURE_LEVEL - 0.01])
    # phase 1 is not determined (too little abundance): not listed again
    assert q.never_pure == {"phase 2": pytest.approx(PURE_LEVEL - 0.01)}
    assert q.table().count("never pure") == 1
    assert "at most 89 % of one" in q.table()
    assert np.all(np.isfinite(q.atomic_fractions[:, 2]))  # a number, with its caveat
    with pytest.raises(ValueError, match="2 largest shares for 3 phases"):
        mark_never_pure(q, [1.0, 1.0])


def test_never_pure_survives_the_record_and_shows_in_the_plot():
    s = make_map(dose=200, shape=(16, 16))
    s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False, max_iter=50)
    rec = read_record(s)
    assert rec.largest_share.shape == (2,)
    assert np.all((rec.largest_share > 0) & (rec.largest_share <= 1 + 1e-9))
    write_record(s, dataclasses.replace(rec, largest_share=np.array([1.0, 0.4])))
    q = s.quantify_phases()
    assert q.never_pure == {q.phase_names[1]: pytest.approx(0.4)}
    fig = s.plot_phases()
    labels = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "never pure (≤ 40 % of a pixel)" in labels
    plt.close(fig)


def test_k_3_on_a_one_phase_map_marks_the_phantoms():
    s = make_map(dose=200, shape=(16, 16))
    s.data[:] = np.random.default_rng(1).poisson(
        s.data.reshape(-1, s.data.shape[-1]).mean(axis=0), size=s.data.shape
    ).astype(s.data.dtype)  # every pixel the same mixture: one phase
    from esmpy_hs import TradedPhaseWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TradedPhaseWarning)
        s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                        max_iter=300)  # fmt: skip
    q = s.quantify_phases()
    assert 1 <= len(q.undetermined) <= 2
    # a phantom that holds counts at almost no abundance is warned about and said to be one
    for w in caught:
        if issubclass(w.category, TradedPhaseWarning):
            name = str(w.message).split(" holds")[0]
            assert "traded its abundance" in q.undetermined[name]
    text = str(q)
    assert all(err <= 100 for _, err in _numbers_with_errors(text))
    fig = s.plot_phases()
    labels = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "not determined" in labels


def test_k_larger_than_the_columns_of_G_is_refused_before_fitting():
    s = make_map(dose=20, shape=(6, 6))
    s.metadata.set_item("Sample.thickness", 50.0)  # absorption: a per-phase (3-D) G
    s.metadata.set_item("Sample.density", 4.0)
    with pytest.raises(ValueError, match=r"output_dimension=12 phases is more than the \d+"):
        s.decomposition(algorithm="smart_nmf", output_dimension=12, print_info=False)
    assert s.learning_results.factors is None


def test_no_counts_in_the_fitted_range_says_where_they_are():
    s = make_map(dose=20, shape=(6, 6))
    data = np.zeros_like(s.data)
    data[..., :3] = 50  # all counts in the first channels: 0.20–0.22 keV, below the low cut
    s.data = data
    with pytest.raises(ValueError, match=r"0 % of the map's .* counts lie in the fitted range.*"
                                         r"between 0\.2 and 0\.22 keV"):  # fmt: skip
        s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False)


def test_a_phase_that_traded_abundance_for_scale_is_named_as_such():
    from esmpy_hs.physics.composition import traded_phases

    elements = ["Mg", "O", "Si"]
    W = np.array([[0.2, 0.1, 0.3], [0.6, 0.5, 0.3], [0.2, 0.4, 0.4]])
    S = np.ones(3)
    # phase 1: 0.05 % of the abundance, its spectrum 500 times richer: 20 % of the counts
    H = np.array([1e5, 1e2, 1e5])
    Wt = W * np.array([1.0, 500.0, 1.0])
    q = quantify_rows(elements, Wt, S, H)
    assert traded_phases(H, q.counts).tolist() == [False, True, False]
    q = mark_undetermined(q, H, pure_counts=np.array([300.0, 1.5e5, 300.0]), pixel_counts=310.0)
    why = q.undetermined["phase 1"]
    assert why.startswith("holds 0.05 % of the map's abundance but 20 % of its element counts")
    assert "1.5e+05 counts, 484× the map's richest pixels" in why
    assert np.all(np.isnan(q.atomic_fractions[:, 1]))
    # a phase with almost no abundance and almost no counts keeps the plain reason
    q2 = mark_undetermined(quantify_rows(elements, W, S, H), H)
    assert q2.undetermined["phase 1"] == "holds 0.05 % of the map's abundance"
    assert not traded_phases(H, quantify_rows(elements, W, S, H).counts).any()


def test_the_record_keeps_pure_counts_and_warns_about_a_traded_phase():
    from esmpy_hs import TradedPhaseWarning
    from esmpy_hs.signals._decomposition import _warn_traded

    s = make_map(dose=200, shape=(16, 16))
    s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False, max_iter=80)
    rec = read_record(s)
    c0, c1 = rec.channels
    totals = s.data.reshape(-1, s.data.shape[-1])[:, c0:c1].sum(axis=1)
    # the model's pixel counts follow the data's without their Poisson spread: its 99th
    # percentile lies between the data's median and the data's 99th percentile
    assert np.median(totals) < rec.pixel_counts < np.percentile(totals, 99)
    assert rec.pure_counts.shape == (2,)
    assert np.allclose(rec.pure_counts, s.learning_results.factors.sum(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TradedPhaseWarning)
        _warn_traded(rec)  # a normal fit: no warning
    # the same fit with the smaller phase's abundance traded for a 1000× richer spectrum:
    # the same counts in every pixel, < 0.5 % of the abundance
    j = int(np.argmin(rec.H_sums))
    f = np.where(np.arange(2) == j, 1000.0, 1.0)
    traded = dataclasses.replace(rec, W=rec.W * f, H_sums=rec.H_sums / f,
                                 pure_counts=rec.pure_counts * f)  # fmt: skip
    write_record(s, traded)
    name = rec.phase_names[j]
    # ... and what to try: fewer phases, a known composition, or asking the counts whether
    # the sparsity prior suits the map
    expected = (rf"{name} holds .* % of the map's abundance but .*× the map's richest pixels"
                r".*phases=.*s\.estimate_mu\(k\)")  # fmt: skip
    with pytest.warns(TradedPhaseWarning, match=expected):
        _warn_traded(read_record(s))
    q = s.quantify_phases()
    assert "traded its abundance against the scale" in q.undetermined[name]
    assert list(q.traded) == [name] and q.traded[name].endswith("abundance traded for scale")
    assert np.all(np.isnan(q.atomic_fractions[:, j]))
    fig = s.plot_phases()
    labels = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "abundance traded for scale" in labels.replace("\n", " ")
    plt.close(fig)

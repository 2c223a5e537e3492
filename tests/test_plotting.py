"""plot_phases: one row per phase (map, spectrum with per-element model, composition)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from esmpy_hs.plotting import line_label, plot_phases


@pytest.fixture(scope="module")
def fitted():
    from esmpy_hs.datasets import reference_sample

    s = reference_sample(dose=300, shape=(16, 16), random_state=1)
    s.decomposition(algorithm="smart_nmf", output_dimension=3, max_iter=30, print_info=False)
    return s


def _rows(fig) -> set[int]:
    rows = set()
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None:
            rows.add(spec.rowspan.start)
    return rows


@pytest.mark.parametrize(
    ("element", "name", "expected"),
    [
        ("Fe", "Ka1", "Fe Kα"),
        ("Fe", "Lb1", "Fe Lβ"),
        ("Hf", "Ma1", "Hf Mα"),
        ("Ca", "Ll", "Ca Ll"),
        ("Sm", "Mz1", "Sm Mζ"),
        ("U", "M3M5", "U M3M5"),
    ],
)
def test_line_label(element, name, expected):
    assert line_label(element, name) == expected


def test_plot_phases_rows_and_labels(fitted, tmp_path):
    out = tmp_path / "phases.png"
    fig = fitted.plot_phases(filename=out)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        assert _rows(fig) == {0, 1, 2}
        assert out.stat().st_size > 10_000
        spectra = [ax for ax in fig.axes if ax.get_xlabel() == "energy (keV)"]
        assert len(spectra) == 3
        legend = [t.get_text() for t in spectra[0].get_legend().get_texts()]
        assert any(t.startswith("data") for t in legend)
        assert any(t.startswith("model") for t in legend)
        assert "O Kα" in {
            t for ax in spectra for t in [x.get_text() for x in ax.get_legend().get_texts()]
        }
        text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
        assert "at.%" in text and "±" in text
    finally:
        plt.close(fig)


def test_plot_phases_options(fitted):
    names = ["a", "b", "c"]
    fig = plot_phases(fitted, phase_names=names, log=True, energy_range=(0.3, 5.0))
    try:
        spectra = [ax for ax in fig.axes if ax.get_xlabel() == "energy (keV)"]
        assert all(ax.get_yscale() == "log" for ax in spectra)
        assert np.allclose(spectra[0].get_xlim(), (0.3, 5.0))
        titles = [ax.get_title() for ax in fig.axes]
        assert any(t.startswith("a") for t in titles)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="phase names"):
        plot_phases(fitted, phase_names=["only one"])


def test_plot_phases_needs_a_decomposition():
    from esmpy_hs.datasets import reference_sample

    s = reference_sample(dose=50, shape=(8, 8))
    with pytest.raises(ValueError, match="decomposition"):
        plot_phases(s)


def test_plot_phases_other_algorithm():
    """After a HyperSpy decomposition: maps and factors, no composition."""
    from esmpy_hs.datasets import reference_sample

    s = reference_sample(dose=300, shape=(8, 8))
    s.change_dtype("float64")
    s.decomposition(algorithm="SVD", output_dimension=2, print_info=False)
    fig = s.plot_phases()
    try:
        assert len(_rows(fig)) == s.learning_results.factors.shape[1]
        text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
        assert "smart_nmf" in text
    finally:
        plt.close(fig)

"""The esmpy-hs command: help, decompose on a small simulated file, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from esmpy_hs.cli import build_parser, main


@pytest.fixture(scope="module")
def small_map(tmp_path_factory):
    from esmpy_hs.datasets import reference_sample

    path = tmp_path_factory.mktemp("cli") / "small.hspy"
    reference_sample(dose=300, shape=(24, 24)).save(path)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err, "no error message"
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("esmpy-hs: error: ")
    return lines[0]


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["decompose", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "-k",
        "--elements",
        "--thickness",
        "--density",
        "--beam-energy",
        "--window",
        "--lazy",
        "--output",
        "--max-iter",
        "--energy-range",
        "--stray-elements",
        "--mu",
        "--max-phases",
        "--smoothing",
        "FILE",
    ):
        assert option in out, option
    # every option of the parser has a help text
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for parser in sub.values():
        for action in parser._actions:
            assert action.help, action.dest


def test_top_level_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "decompose" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "esmpy-hs" in capsys.readouterr().out
    assert main([]) == 2


def test_decompose_writes_four_files(small_map, tmp_path, capsys):
    out = tmp_path / "res" / "fit.hspy"
    code = main(
        [
            "decompose",
            str(small_map),
            "-k",
            "3",
            "-o",
            str(out),
            "--max-iter",
            "20",
            "--thickness",
            "80 nm",
            "--density",
            "4.5 g/cm^3",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    for ext in ("hspy", "png", "txt", "csv"):
        assert (tmp_path / "res" / f"fit.{ext}").stat().st_size > 0, ext
    table = (tmp_path / "res" / "fit.txt").read_text(encoding="utf-8")
    assert "at.%" in table and "phase 2" in table
    csv = (tmp_path / "res" / "fit.csv").read_text(encoding="utf-8").splitlines()
    assert csv[0].startswith("phase,element,at%")

    import hyperspy.api as hs

    fitted = hs.load(tmp_path / "res" / "fit.hspy")
    assert fitted.metadata.Signal.signal_type == "EDS_ESMPY"
    assert fitted.metadata.Sample.thickness == "80 nm"
    assert fitted.learning_results.factors.shape[1] == 3
    # the element maps: one file, elements × map, equal to the fitted signal's maps
    assert (tmp_path / "res" / "fit_elements.png").stat().st_size > 0
    stack = hs.load(tmp_path / "res" / "fit_elements.hspy")
    maps = fitted.get_element_maps("at.%")
    assert list(stack.metadata.Sample.elements) == [m.metadata.General.title for m in maps]
    np.testing.assert_allclose(stack.data, np.stack([m.data for m in maps]))
    assert stack.metadata.Signal.Noise_properties.variance.data.shape == stack.data.shape
    # the input file is untouched
    original = hs.load(small_map)
    assert original.metadata.get_item("SmartNMF") is None
    assert original.metadata.Sample.thickness == 100.0


@pytest.mark.filterwarnings("always::esmpy_hs.signals._model_check.UnexplainedCountsWarning")
def test_decompose_default_output_and_overrides(small_map, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "decompose",
            str(small_map),
            "-k",
            "2",
            "--elements",
            "Mg,Si,O,Fe,Ca",
            "--stray-elements",
            "Cu",
            "--beam-energy",
            "200",
            "--window",
            "windowless",
            "--energy-range",
            "0.3",
            "10",
            "--max-iter",
            "10",
            "--seed",
            "1",
            "--log",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out
    # the map holds Al and Hf, which --elements leaves out: the model check says so (issue #13)
    assert "leaves counts unexplained" in captured.err
    # Br Lα (1.48 keV) overlaps Al Kα; Br's Kα at 11.9 keV, above the fitted range, is absent
    # from the data: the warning names Al (issue #13)
    assert "Al Kα" in captured.err and "Br" not in captured.err
    for ext in ("hspy", "png", "txt", "csv"):
        assert (tmp_path / f"small_esmpy.{ext}").exists()
    import hyperspy.api as hs

    fitted = hs.load(tmp_path / "small_esmpy.hspy")
    labels = list(fitted.metadata.SmartNMF.labels)
    assert "Al" not in labels and any(label.startswith("Cu_") for label in labels)
    # --window states the detector's window: written to the copy, used by the model
    from esmpy_hs.signals._record import read_record

    assert fitted.metadata.Acquisition_instrument.TEM.Detector.EDS.efficiency == "windowless"
    detector = read_record(fitted).physics_model().detector
    assert detector.window_stated and detector.window_name == "windowless"
    assert "efficiency" not in hs.load(small_map).metadata.Acquisition_instrument.TEM.Detector.EDS


def test_window_choices_are_the_presets():
    from esmpy_hs.physics.detector import WINDOW_PRESETS

    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    (action,) = [a for a in sub["decompose"]._actions if a.dest == "window"]
    assert set(action.choices) == set(WINDOW_PRESETS)


def test_missing_file(tmp_path, capsys):
    assert main(["decompose", str(tmp_path / "nope.hspy"), "-k", "3"]) == 1
    assert "no such file" in _error_line(capsys)


@pytest.mark.parametrize("name", ["notes.txt", "fake.hspy"])
def test_unreadable_file(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text("this is not a spectrum image\n", encoding="utf-8")
    assert main(["decompose", str(path), "-k", "3"]) == 1
    assert "cannot read" in _error_line(capsys)


def test_not_a_spectrum(tmp_path, capsys):
    import hyperspy.api as hs

    path = tmp_path / "image.hspy"
    hs.signals.Signal2D(np.ones((8, 8))).save(path)
    assert main(["decompose", str(path), "-k", "2"]) == 1
    assert "no spectrum" in _error_line(capsys)


def test_not_an_energy_axis(tmp_path, capsys):
    import hyperspy.api as hs

    path = tmp_path / "plain.hspy"
    hs.signals.Signal1D(np.ones((4, 4, 50))).save(path)
    assert main(["decompose", str(path), "-k", "2"]) == 1
    assert "not an energy" in _error_line(capsys)


def test_missing_elements(small_map, tmp_path, capsys):
    import hyperspy.api as hs

    s = hs.load(small_map)
    del s.metadata.Sample.elements
    path = tmp_path / "no_elements.hspy"
    s.save(path)
    assert main(["decompose", str(path), "-k", "3"]) == 1
    line = _error_line(capsys)
    assert "missing metadata" in line and "elements" in line


def test_missing_beam_energy(small_map, tmp_path, capsys):
    import hyperspy.api as hs

    s = hs.load(small_map)
    del s.metadata.Acquisition_instrument.TEM.beam_energy
    path = tmp_path / "no_beam.hspy"
    s.save(path)
    assert main(["decompose", str(path), "-k", "3", "-q"]) == 1
    assert "beam energy" in _error_line(capsys)


def test_nothing_to_fit(small_map, tmp_path, capsys):
    import hyperspy.api as hs

    s = hs.load(small_map)
    s.data[:] = 0
    path = tmp_path / "empty.hspy"
    s.save(path)
    assert main(["decompose", str(path), "-k", "3"]) == 1
    assert "nothing to fit" in _error_line(capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--elements", "Xx"], "--elements"), (["--thickness", "banana"], "thickness")],
)
def test_bad_overrides(small_map, capsys, extra, message):
    assert main(["decompose", str(small_map), "-k", "3", "-q", *extra]) == 1
    assert message in _error_line(capsys)


def test_output_cannot_overwrite_input(small_map, capsys):
    assert main(["decompose", str(small_map), "-k", "3", "-o", str(small_map)]) == 1
    assert "overwrite the input" in _error_line(capsys)


@pytest.mark.parametrize("k", ["0", "-1", "three", "autos"])
def test_bad_k_is_a_usage_error(small_map, capsys, k):
    with pytest.raises(SystemExit) as exc:
        main(["decompose", str(small_map), "-k", k])
    assert exc.value.code == 2
    assert "-k" in capsys.readouterr().err


def test_module_entry_point():
    """``python -m esmpy_hs`` runs the same command (for machines without the script on PATH)."""
    result = subprocess.run(
        [sys.executable, "-m", "esmpy_hs", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("esmpy-hs ")


def test_decompose_lazy(small_map, tmp_path):
    """--lazy fits chunk by chunk and gives the same table as the in-memory fit."""
    out_lazy, out_eager = tmp_path / "lazy.hspy", tmp_path / "eager.hspy"
    common = ["decompose", str(small_map), "-k", "2", "--max-iter", "5", "-q"]
    assert main([*common, "--lazy", "-o", str(out_lazy)]) == 0
    assert main([*common, "-o", str(out_eager)]) == 0
    assert all(out_lazy.with_suffix(f".{ext}").exists() for ext in ("hspy", "png", "txt", "csv"))
    lazy_rows = out_lazy.with_suffix(".csv").read_text().splitlines()
    eager_rows = out_eager.with_suffix(".csv").read_text().splitlines()
    assert len(lazy_rows) == len(eager_rows) > 1
    for a, b in zip(lazy_rows[1:], eager_rows[1:], strict=True):
        va, vb = a.split(","), b.split(",")
        assert va[:2] == vb[:2]
        if "" in va[2:6] or "" in vb[2:6]:
            # a listed element not detected: the lazy map is tested on its summed spectrum
            # only, the eager one also on each phase's pure pixels
            continue
        np.testing.assert_allclose([float(x) for x in va[2:]], [float(x) for x in vb[2:]],
                                   rtol=1e-6, atol=1e-3)  # fmt: skip


def test_decompose_k_auto(small_map, tmp_path, capsys):
    """-k auto estimates k from held-out counts (up to --max-phases), then fits that many
    phases; --max-phases without -k auto is noted, not silently dropped."""
    import hyperspy.api as hs

    out = tmp_path / "auto.hspy"
    assert main(["decompose", str(small_map), "-k", "auto", "--max-phases", "4", "--max-iter",
                 "20", "-q", "-o", str(out)]) == 0  # fmt: skip
    s = hs.load(out)
    node = s.metadata.SmartNMF_n_phases
    assert list(node.ks) == [1, 2, 3, 4]  # the cap was passed on
    k = int(node.k)
    assert 1 <= k <= 4
    assert s.learning_results.factors.shape[1] == k
    assert main(["decompose", str(small_map), "-k", "2", "--max-phases", "4", "--max-iter", "5",
                 "-q", "-o", str(tmp_path / "k2.hspy")]) == 0  # fmt: skip
    assert "--max-phases has no effect with -k 2" in capsys.readouterr().err
    for bad in ("0", "x"):
        with pytest.raises(SystemExit):
            main(["decompose", str(small_map), "-k", "auto", "--max-phases", bad])


def test_decompose_mu(small_map, tmp_path, capsys):
    """--mu VALUE is the fit's sparsity weight; --mu auto chooses it from held-out counts;
    anything else is refused before any fit."""
    import hyperspy.api as hs

    out = tmp_path / "mu0.hspy"
    assert main(["decompose", str(small_map), "-k", "3", "--mu", "0", "--max-iter", "20", "-q",
                 "-o", str(out)]) == 0  # fmt: skip
    assert json.loads(hs.load(out).metadata.SmartNMF.parameters)["mu"] == 0.0
    out = tmp_path / "muauto.hspy"
    assert main(["decompose", str(small_map), "-k", "3", "--mu", "auto", "--max-iter", "20",
                 "-q", "-o", str(out)]) == 0  # fmt: skip
    s = hs.load(out)
    node = s.metadata.SmartNMF_mu
    assert json.loads(s.metadata.SmartNMF.parameters)["mu"] == node.mu
    assert node.mu in (0.01, 0.0) and node.scores.shape == (3, 2)
    for bad in ("-1", "x", "inf"):
        with pytest.raises(SystemExit):
            main(["decompose", str(small_map), "-k", "3", "--mu", bad])
        assert "--mu" in capsys.readouterr().err


def test_decompose_smoothing(small_map, tmp_path, capsys):
    """--smoothing model and --smoothing shares reach the fit (kept in its stored parameters:
    given, they skip the choice between the two on a mixed map); with --lazy the model form is
    refused before the file is read; a third value is a usage error."""
    import hyperspy.api as hs

    for value in ("model", "shares"):
        out = tmp_path / f"{value}.hspy"
        assert main(["decompose", str(small_map), "-k", "2", "--smoothing", value, "--max-iter",
                     "20", "-q", "-o", str(out)]) == 0  # fmt: skip
        assert json.loads(hs.load(out).metadata.SmartNMF.parameters)["smoothing"] == value
    assert main(["decompose", str(small_map), "-k", "2", "--smoothing", "model", "--lazy",
                 "-o", str(tmp_path / "lazy.hspy")]) == 1  # fmt: skip
    assert "in-memory fits" in _error_line(capsys)
    assert not (tmp_path / "lazy.hspy").exists()
    with pytest.raises(SystemExit):
        main(["decompose", str(small_map), "-k", "2", "--smoothing", "counts"])
    assert "--smoothing" in capsys.readouterr().err

"""HyperSpy's decomposition keywords; the command line never loses a fit."""

from __future__ import annotations

import os
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import pytest

from esmpy_hs.cli import main
from tests.reliability.conftest import FAST


def _fit(s, **kwargs):
    s.decomposition(algorithm="smart_nmf", output_dimension=2, **{**FAST, **kwargs})


@pytest.mark.parametrize(
    ("key", "off"),
    [("navigation_mask", None), ("signal_mask", None), ("normalize_poissonian_noise", False)],
)
def test_hyperspy_keywords_left_off_are_accepted(small, key, off):
    ref = small.deepcopy()
    _fit(ref)
    _fit(small, **{key: off})
    np.testing.assert_array_equal(small.metadata.SmartNMF.W, ref.metadata.SmartNMF.W)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("normalize_poissonian_noise", True, "Poisson likelihood"),
        ("navigation_mask", np.zeros((12, 12), bool), r"s\.inav"),
        ("signal_mask", np.zeros(10, bool), "energy_range="),
        ("centre", "signal", "uncentred"),
    ],
)
def test_hyperspy_keywords_in_use_are_refused_with_the_reason(small, key, value, why):
    with pytest.raises(ValueError, match=rf"{key}=.* not supported by smart_nmf: .*{why}"):
        _fit(small, **{key: value})
    assert "SmartNMF" not in small.metadata


# -- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def map_file(tmp_path_factory, base_map):
    path = tmp_path_factory.mktemp("reliab_cli") / "map.hspy"
    base_map.save(path)
    return path


def _no_fit(monkeypatch):
    from esmpy_hs.signals.eds_espm import EDSespm

    def fail(*args, **kwargs):
        raise AssertionError("the fit ran before the outputs were checked")

    monkeypatch.setattr(EDSespm, "decomposition", fail)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("esmpy-hs: error: "), err
    return err[0]


def test_unwritable_output_fails_before_the_fit(map_file, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _no_fit(monkeypatch)
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "-o", str(blocker / "x.hspy")])
    assert rc == 1
    msg = _error(capsys)
    assert "cannot write the results to" in msg and "-o/--output" in msg


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_output_in_an_unwritable_place_fails_before_the_fit(map_file, monkeypatch, capsys):
    """/proc takes no new folders, not even from root: like -o /unwritable/x.hspy."""
    _no_fit(monkeypatch)
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "-o", "/proc/esmpy_hs_out/x.hspy"])
    assert rc == 1
    msg = _error(capsys)
    assert "cannot write the results to /proc/esmpy_hs_out" in msg and "-o/--output" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_fails_before_the_fit(map_file, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    _no_fit(monkeypatch)
    try:
        rc = main(["decompose", str(map_file), "-k", "2", "-q", "-o", str(folder / "x.hspy")])
    finally:
        folder.chmod(0o700)
    assert rc == 1
    assert "cannot write the results to" in _error(capsys)


def test_output_named_like_a_folder_fails_before_the_fit(map_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "x.png").mkdir()
    _no_fit(monkeypatch)
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "-o", str(tmp_path / "x.hspy")])
    assert rc == 1
    assert "a folder has that name" in _error(capsys)


def test_fit_is_saved_before_the_other_outputs(map_file, tmp_path, monkeypatch, capsys):
    from esmpy_hs.signals.eds_espm import EDSespm

    def broken_plot(self, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(EDSespm, "plot_phases", broken_plot)
    out = tmp_path / "res.hspy"
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "--max-iter", "5", "-o", str(out)])
    assert rc == 1
    msg = _error(capsys)
    assert "disk full" in msg and f"saved in {out}" in msg
    saved = hs.load(out)
    assert saved.quantify_phases().atomic_fractions.shape[1] == 2


def test_seed_with_the_default_start_says_it_does_nothing(map_file, tmp_path, capsys):
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "--max-iter", "3", "--seed", "1",
               "-o", str(tmp_path / "a.hspy")])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "--seed has no effect" in err and "--init random" in err


def test_seed_with_a_random_start_is_used(map_file, tmp_path, capsys):
    W = []
    for seed in (1, 1, 2):
        out = tmp_path / f"s{len(W)}.hspy"
        rc = main(["decompose", str(map_file), "-k", "2", "-q", "--max-iter", "3",
                   "--init", "random", "--seed", str(seed), "-o", str(out)])  # fmt: skip
        assert rc == 0
        W.append(np.asarray(hs.load(out).metadata.SmartNMF.W))
    assert "--seed has no effect" not in capsys.readouterr().err
    np.testing.assert_array_equal(W[0], W[1])
    assert not np.array_equal(W[0], W[2])


def test_implausible_input_warns_on_one_line(map_file, tmp_path, capsys):
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "--max-iter", "3",
               "--thickness", "2 um", "-o", str(tmp_path / "t.hspy")])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("esmpy-hs: warning: metadata.Sample.thickness is 2000 nm")
               for line in err), err  # fmt: skip


def test_implausible_input_error_is_one_line(map_file, tmp_path, capsys):
    rc = main(["decompose", str(map_file), "-k", "2", "-q", "--thickness", "100 um",
               "-o", str(tmp_path / "t.hspy")])  # fmt: skip
    assert rc == 1
    assert "100 µm" in _error(capsys)

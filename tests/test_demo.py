"""The demo, on a small map with few iterations (the full demo is not run in tests)."""

from __future__ import annotations

import pytest

from esmpy_hs.cli import main
from esmpy_hs.demo import comparison_table, run_demo


def test_run_demo_small(tmp_path, capsys):
    result = run_demo(tmp_path, shape=(16, 16), max_iter=15, progress=False)
    out = capsys.readouterr().out
    assert result.figure == tmp_path / "esmpy_demo.png"
    assert result.figure.stat().st_size > 10_000
    assert result.result.stat().st_size > 0
    for name in ("bridgmanite", "ferropericlase", "Ca-perovskite"):
        assert name in out and name in result.table
    assert "truth at.%" in out and "angle" in out
    assert set(result.timings) == {"simulate", "fit", "write"}
    assert sorted(result.score.permutation) == [0, 1, 2]

    import hyperspy.api as hs

    loaded = hs.load(result.result)
    assert loaded.quantify_phases().n_phases == 3


def test_demo_command(tmp_path, capsys):
    code = main(
        ["demo", "-d", str(tmp_path), "--size", "12", "--max-iter", "5", "--quiet", "--seed", "3"]
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "esmpy_demo.png").exists()
    assert (tmp_path / "esmpy_demo.hspy").exists()


@pytest.mark.parametrize("size", ["2", "axb", "3x4x5"])
def test_demo_bad_size(size, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--size", size])
    assert exc.value.code == 2


def test_comparison_table_renormalises_truth():
    import numpy as np

    from esmpy_hs.physics import Quantification

    q = Quantification(
        elements=["Fe", "O"],
        atomic_fractions=np.array([[0.5], [0.5]]),
        weight_fractions=np.array([[0.78], [0.22]]),
        atomic_errors=np.array([[0.01], [0.01]]),
        weight_errors=np.array([[0.01], [0.01]]),
        counts=np.array([[100.0], [100.0]]),
    )
    text = comparison_table(q, {"wustite": {"Fe": 0.4, "O": 0.4, "Cu": 0.2}}, [0])
    assert "phase 0  ↔  wustite" in text
    fe = next(line for line in text.splitlines() if line.strip().startswith("Fe"))
    assert fe.split()[-1] == "50.00"  # 0.4 / (0.4 + 0.4), Cu is not quantified

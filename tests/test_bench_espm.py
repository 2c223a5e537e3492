"""``benchmarks/bench_espm.py`` without espm: a clear exit with the set-up recipe, no traceback.

espm is never a dependency of esmpy-hs (the benchmark runs from a venv of its own), so in the
project's environment the benchmark must stop before any work and say how to set that venv up.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_espm.py"


@pytest.mark.skipif(importlib.util.find_spec("espm") is not None,
                    reason="espm is installed here: the benchmark would run in full")  # fmt: skip
def test_exits_with_the_recipe_without_espm():
    out = subprocess.run([sys.executable, str(_PATH)], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "espm is not importable" in out.stderr
    assert "pip install --no-deps espm==1.1.3" in out.stderr
    assert out.stdout == ""

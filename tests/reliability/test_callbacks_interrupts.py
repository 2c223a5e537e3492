"""A user callback with absorption on; Ctrl-C at each stage of a fit."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reliability.conftest import FAST


def _untouched(s) -> None:
    assert "SmartNMF" not in s.metadata
    assert s.learning_results.factors is None
    assert s.learning_results.loadings is None


def test_user_callback_is_called_with_thickness_set(small):
    """The absorption refresher used to replace the user's callback: 0 of N calls."""
    assert small.metadata.has_item("Sample.thickness")
    calls = []

    def cb(estimator, iteration, W, H):
        calls.append(iteration)

    ref = small.deepcopy()
    ref.decomposition(algorithm="smart_nmf", output_dimension=3, **FAST)
    small.decomposition(algorithm="smart_nmf", output_dimension=3, callback=cb, **FAST)
    n_iter = int(small.metadata.SmartNMF.n_iter)
    assert calls == list(range(1, n_iter + 1))
    # the refresher still replaces G: the same fit as without the callback...
    np.testing.assert_array_equal(small.metadata.SmartNMF.W, ref.metadata.SmartNMF.W)
    # ...and unlike a fit whose absorption is never refreshed
    frozen = small.deepcopy()
    frozen.decomposition(algorithm="smart_nmf", output_dimension=3, callback=cb,
                         absorption_every=10_000, **FAST)  # fmt: skip
    assert not np.array_equal(frozen.metadata.SmartNMF.W, ref.metadata.SmartNMF.W)


def test_user_callback_can_stop_the_fit_with_absorption(small):
    def stop(estimator, iteration, W, H):
        if iteration == 4:
            raise KeyboardInterrupt

    small.decomposition(algorithm="smart_nmf", output_dimension=3, callback=stop, **FAST)
    node = small.metadata.SmartNMF
    assert node.stop_reason == "interrupted"
    assert int(node.n_iter) == 4
    q = small.quantify_phases()  # the last iterate is stored and usable
    assert np.all(np.isfinite(q.atomic_fractions))


@pytest.mark.parametrize(
    "target",
    [
        "esmpy_hs.signals._decomposition.read_acquisition",  # metadata reading
        "esmpy_hs.physics.build_G",  # G
    ],
)
def test_interrupt_before_the_fit_leaves_the_signal(small, monkeypatch, target):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    data = small.data.copy()
    with pytest.raises(KeyboardInterrupt):
        small.decomposition(algorithm="smart_nmf", output_dimension=3, **FAST)
    _untouched(small)
    np.testing.assert_array_equal(small.data, data)


@pytest.mark.parametrize("lazy", [False, True])
def test_interrupt_during_the_start_ends_the_fit(monkeypatch, lazy):
    """Ctrl-C in the binned refinement of the start used to be swallowed (the fit went on)."""
    import esmpy_hs.nmf._init as init_mod
    from esmpy_hs.datasets import reference_sample

    s = reference_sample(dose=20, shape=(16, 16))  # low dose: the start bins and refines
    if lazy:
        s = s.as_lazy()
    real_solve = init_mod.solve
    calls = []

    def ctrl_c(owner, iteration, W, H):
        raise KeyboardInterrupt  # what Ctrl-C raises inside the refinement's loop

    def refinement(*args, **kwargs):
        calls.append(kwargs.get("max_iter"))
        return real_solve(*args, **dict(kwargs, callback=ctrl_c, callback_every=1))

    monkeypatch.setattr(init_mod, "solve", refinement)
    with pytest.raises(KeyboardInterrupt):
        s.decomposition(algorithm="smart_nmf", output_dimension=3, **FAST)
    assert len(calls) == 1  # the refinement ran and was interrupted
    _untouched(s)


def test_interrupt_in_the_main_loop_keeps_the_last_iterate(small, capsys):
    def stop(estimator, iteration, W, H):
        if iteration == 6:
            raise KeyboardInterrupt

    small.decomposition(algorithm="smart_nmf", output_dimension=3, callback=stop,
                        **dict(FAST, print_info=True))  # fmt: skip
    assert "interrupted after 6 iterations; the last iterate is stored" in capsys.readouterr().out
    node = small.metadata.SmartNMF
    assert node.stop_reason == "interrupted" and int(node.n_iter) == 6
    assert small.learning_results.decomposition_algorithm == "smart_nmf"
    assert small.learning_results.loadings.shape == (144, 3)


_CTRL_C_SCRIPT = """
import signal, sys, time
# a runner that started the suite in the background (``cmd &`` in a script) passes SIGINT on
# as ignored, and Python then keeps it ignored: Python's own handler, as a terminal's Ctrl-C
# would find it
signal.signal(signal.SIGINT, signal.default_int_handler)
from esmpy_hs.datasets import reference_sample
s = reference_sample(dose=20, shape=(96, 96))
print("START", flush=True)
try:
    s.decomposition(algorithm="smart_nmf", output_dimension=3, max_iter=3000, tol=0,
                    print_info=False)
except KeyboardInterrupt:
    print("RAISED", "SmartNMF" in s.metadata, time.time(), flush=True)
    sys.exit(0)
print("STORED", s.metadata.SmartNMF.stop_reason, time.time(), flush=True)
"""


def test_real_ctrl_c_stops_the_fit_quickly(tmp_path):
    """A real SIGINT 0.3 s into a fit (reading the metadata, building G or the start): the fit
    ends within about a second, raising (no result stored), or storing the last iterate as
    "interrupted" on a machine fast enough to be in the main loop by then."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), TQDM_DISABLE="1", MPLBACKEND="Agg")
    proc = subprocess.Popen([sys.executable, "-c", _CTRL_C_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "START"
        time.sleep(0.3)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    *outcome, done = out.split()
    assert " ".join(outcome) in ("RAISED False", "STORED interrupted"), (out, err)
    assert float(done) - sent < 2.5  # about a second, with margin for a busy machine


def test_interrupt_during_the_h_only_prepass_ends_the_fit(small, monkeypatch):
    import esmpy_hs.nmf._fit as fit

    real_iterate = fit.iterate
    calls = []

    def ctrl_c(owner, iteration, W, H):
        raise KeyboardInterrupt

    def warmup_interrupted(*args, **kwargs):
        calls.append(kwargs.get("losses", True))
        if kwargs.get("losses", True) is False:  # the H-only warm-up after the start
            kwargs = dict(kwargs, callback=ctrl_c, callback_every=1)
        return real_iterate(*args, **kwargs)

    monkeypatch.setattr(fit, "iterate", warmup_interrupted)
    small.decomposition(algorithm="smart_nmf", output_dimension=3, **FAST)
    assert calls == [False]  # the main loop never started
    node = small.metadata.SmartNMF
    assert node.stop_reason == "interrupted" and int(node.n_iter) == 0


def test_swallowed_ctrl_c_still_stops_the_fit(small):
    """A Ctrl-C whose KeyboardInterrupt some library swallows (numba's compiler ignores
    exceptions in its callbacks) still ends the fit at the next iteration."""
    import os
    import signal
    import time

    def swallow(estimator, iteration, W, H):
        if iteration == 3:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)  # the signal arrives here
            except KeyboardInterrupt:
                pass  # swallowed

    # Python's own handler, as in an interactive session (a runner started in the background
    # inherits SIGINT ignored, and the watch then rightly leaves it alone)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        small.decomposition(algorithm="smart_nmf", output_dimension=3, callback=swallow, **FAST)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    node = small.metadata.SmartNMF
    assert node.stop_reason == "interrupted" and int(node.n_iter) == 4


def test_interrupt_keeps_the_iterate_the_callback_saw_and_quantifies_it(small):
    """With extrapolation on, the point a pass starts from is a guess along the last step; the
    result of an interrupt must be the last plain update (the iterate the callback saw), and
    the table of quantify_phases must be that iterate's."""
    seen = {}

    def stop(estimator, iteration, W, H):
        seen[iteration] = np.array(W)
        if iteration == 8:
            raise KeyboardInterrupt

    small.decomposition(algorithm="smart_nmf", output_dimension=3, callback=stop,
                        **dict(FAST, max_iter=50, momentum=1.0))  # fmt: skip
    node = small.metadata.SmartNMF
    assert node.stop_reason == "interrupted" and int(node.n_iter) == 8
    np.testing.assert_allclose(node.W, seen[8], rtol=1e-12)
    q = small.quantify_phases()
    fr = np.asarray(q.atomic_fractions, dtype=float)
    assert np.all(np.isfinite(fr))
    # the same table as from a signal holding that iterate as a finished fit's result
    ref = small.deepcopy()
    ref.metadata.SmartNMF.stop_reason = "converged"
    np.testing.assert_allclose(np.asarray(ref.quantify_phases().atomic_fractions, dtype=float),
                               fr, rtol=1e-10)  # fmt: skip

"""Cost of the model check against the fit it checks (issue #13), in one process.

A warm-up fit compiles the kernels; then each map is fitted with
``decomposition(algorithm="smart_nmf", output_dimension=3)`` and default settings. "fit" is the
call's wall time less the check's (``metadata.SmartNMF.model_check["seconds"]``).

Run: ``python benchmarks/bench_model_check.py 32 64 real67 real`` (the real map from
``../shared/data/71GPa_experimental_data.hspy``; ``real67`` is it binned 3 × 3). With ``--both``
each map is fitted twice in the same process, the check on the path before its cheaper one
(``esmpy_hs.physics.identification.FAST_PATH = False``, "old") and on it ("new"), in turn
(which goes first alternates from map to map; the candidates' columns are built anew for
each fit, as for a new map). After each fit the same check is run a second time on the
same inputs ("again"): the columns of that calibrated axis are then found built, as for a
refit of the same map; the first line (a map's first check) is what a new map costs. The
garbage collections that run while the check runs are counted and timed (``gc.callbacks``): a
full one (generation 2) walks every object of the session, the fit's included. "CPU" is the
check's process time: it runs on one thread, so on a busy machine it is the steadier figure.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import warnings
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "71GPa_experimental_data.hspy"


#: the garbage collections while the check runs: (generation, seconds) each
_IN_CHECK: list[tuple[int, float]] = []
_GC_STATE = {"on": False, "t0": 0.0}


def _gc_timer(phase: str, info: dict) -> None:
    if not _GC_STATE["on"]:
        return
    if phase == "start":
        _GC_STATE["t0"] = time.perf_counter()
    else:
        _IN_CHECK.append((info["generation"], time.perf_counter() - _GC_STATE["t0"]))


gc.callbacks.append(_gc_timer)


def _gc_note() -> str:
    if not _IN_CHECK:
        return "no garbage collection in it"
    full = [t for g, t in _IN_CHECK if g == 2]
    return (f"{len(_IN_CHECK)} garbage collections in it, {sum(t for _, t in _IN_CHECK):.3f} s"
            f" ({len(full)} full: {sum(full):.3f} s)")


def fit(s, label: str, **kw) -> None:
    import esmpy_hs
    import esmpy_hs.signals._model_check as mc

    got = []
    original = mc.check_model

    cpu = []

    def keep(*args, **kwargs):
        got.append((args, kwargs))
        _IN_CHECK.clear()
        _GC_STATE["on"] = True
        c0 = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            cpu.append(time.process_time() - c0)
            _GC_STATE["on"] = False

    mc.check_model = keep
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False, **kw)
    finally:
        mc.check_model = original
    total = time.perf_counter() - t0
    check = json.loads(s.metadata.SmartNMF.model_check)
    warned = [w for w in caught if issubclass(w.category, esmpy_hs.UnexplainedCountsWarning)]
    fit_s = total - check["seconds"]
    print(f"{label}: fit {fit_s:.2f} s, check {check['seconds']:.3f} s = "
          f"{100 * check['seconds'] / fit_s:.1f} % (CPU {cpu[-1]:.3f} s); warned {check['warned']} "
          f"({len(warned)} warning); findings "
          f"{sorted({f['element'] for f in check['findings']})}; {_gc_note()}",
          flush=True)  # fmt: skip
    if got:  # the same check again on this fit: what is kept per energy axis found built
        _IN_CHECK.clear()
        _GC_STATE["on"] = True
        t1, c1 = time.perf_counter(), time.process_time()
        original(*got[-1][0], **got[-1][1])
        again, again_cpu = time.perf_counter() - t1, time.process_time() - c1
        _GC_STATE["on"] = False
        print(f"  the check again on the same fit: {again:.3f} s = "
              f"{100 * again / fit_s:.1f} % (CPU {again_cpu:.3f} s); {_gc_note()}",
              flush=True)  # fmt: skip
    listed = check.get("listed")
    if listed:
        print(f"  of which the listed elements' presence test {listed['seconds']:.3f} s; not "
              f"detected {listed['not_detected']}", flush=True)  # fmt: skip


def main(which: list[str], both: bool = False) -> None:
    from esmpy_hs.datasets import reference_sample
    from esmpy_hs.physics import identification

    turn = [0]

    def paths(make, label):
        if not both:
            fit(make(), label)
            return
        order = (False, True) if turn[0] % 2 == 0 else (True, False)
        turn[0] += 1
        for fast in order:
            identification.FAST_PATH = fast
            # the second fit of a map has the first's calibrated axis: its candidates' columns
            # would be found built (a refit's case, not a new map's); built anew for each
            identification._CACHE.clear()
            fit(make(), f"{label} [{'new' if fast else 'old'}]")
        identification.FAST_PATH = True

    fit(reference_sample(dose=293, shape=(8, 8), random_state=5), "warm-up", max_iter=5)
    for w in which:
        if w in ("32", "64"):
            n = int(w)
            for seed in (0, 1):
                paths(lambda n=n, seed=seed: reference_sample(dose=293, shape=(n, n),
                                                              random_state=seed),
                      f"reference sample {n}x{n} seed {seed}")  # fmt: skip
        elif w in ("real67", "real"):
            import hyperspy.api as hs

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = hs.load(REAL)
            s.set_signal_type("EDS_ESMPY")
            if w == "real67":
                paths(lambda s=s: s.rebin(scale=(3, 3, 1)), "real map binned 3x3 (67x67)")
            else:
                paths(lambda s=s: s.deepcopy(), "real map, whole")


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--both"] or ["32", "64", "real67"], "--both" in args)

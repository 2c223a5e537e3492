"""The model check's inputs captured from real fits, and the check re-run on them (issue #13).

``python benchmarks/compare_model_check.py capture DIR`` fits the maps below (default settings,
``output_dimension=3``) and pickles the arguments each fit passes to
:func:`esmpy_hs.signals._model_check.check_model` into ``DIR/<name>.pkl``.
``python benchmarks/compare_model_check.py compare DIR`` re-runs the check on each with the
score screen off (``identification.SCORE_SCREEN = False``, the path before it) and on, and
prints whether the warnings, findings and not-detected flags agree, the largest difference of
the statistics both paths compute in full, and the CPU time of each (``time.process_time``,
best of ``--repeat``).

To compare two versions of the code (each run with its own ``PYTHONPATH``; without it
``import esmpy_hs`` finds the editable install, which may be another working tree, since
``python benchmarks/...`` puts ``benchmarks/``, not the current folder, on ``sys.path``):
``python benchmarks/compare_model_check.py dump DIR OUT.pkl [repeat]`` re-runs the check on
each captured input and pickles its results and CPU times (the axis's columns built anew,
"cold", and found built, "warm"); ``python benchmarks/compare_model_check.py diff A.pkl B.pkl``
compares two such files.
"""

from __future__ import annotations

import pickle
import sys
import time
import warnings
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _cases():
    import hyperspy.api as hs

    from esmpy_hs.datasets import reference_sample

    def load(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = hs.load(path)
        s = s[-1] if isinstance(s, list) else s
        s.set_signal_type("EDS_ESMPY")
        return s

    def drop(s, el):
        s.metadata.Sample.elements = [e for e in s.metadata.Sample.elements if e != el]
        return s

    for n in (32, 64):
        for seed in (0, 1):
            yield f"ref{n}_s{seed}", lambda n=n, seed=seed: reference_sample(
                dose=293, shape=(n, n), random_state=seed)
    yield "ref32_noCa", lambda: drop(reference_sample(dose=293, shape=(32, 32), random_state=0),
                                     "Ca")
    yield "ref64_d18", lambda: reference_sample(dose=18, shape=(64, 64), random_state=0)
    yield "ref64_d18_noCa", lambda: drop(reference_sample(dose=18, shape=(64, 64),
                                                          random_state=0), "Ca")
    for folder in ("paper_N293_s1", "paper_N18_s1", "particles_N500_w1", "paper_N293_narrow_s2"):
        yield folder, lambda f=folder: load(SHARED / "independent" / f / "sample.hspy")
    yield "particles_noTi", lambda: drop(load(SHARED / "independent" / "particles_N500_w1"
                                              / "sample.hspy"), "Ti")
    for name in sorted((SHARED / "vendor").iterdir()):
        yield name.stem, lambda p=name: load(p)
    real = SHARED / "71GPa_experimental_data.hspy"
    yield "real67", lambda: load(real).rebin(scale=(3, 3, 1))
    yield "real67_noCa", lambda: drop(load(real).rebin(scale=(3, 3, 1)), "Ca")
    yield "real67_noAl", lambda: drop(load(real).rebin(scale=(3, 3, 1)), "Al")
    yield "real_noCa", lambda: drop(load(real), "Ca")


def capture(out: Path, only: list[str]) -> None:
    import esmpy_hs.signals._model_check as mc

    out.mkdir(parents=True, exist_ok=True)
    original = mc.check_model
    for name, make in _cases():
        if only and name not in only:
            continue
        target = out / f"{name}.pkl"
        if target.exists():
            continue
        got = []

        def keep(*args, got=got, **kw):
            got.append((args, kw))
            return original(*args, **kw)

        mc.check_model = keep
        try:
            s = make()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False)
            print(f"{name}: fit {time.perf_counter() - t0:.1f} s", flush=True)
        finally:
            mc.check_model = original
        with open(target, "wb") as f:
            pickle.dump(got[-1], f)


def _run(args, kw, screen: bool, repeat: int):
    import esmpy_hs.physics.identification as ident
    import esmpy_hs.signals._model_check as mc

    ident.FAST_PATH = screen
    best, out = float("inf"), None
    for _ in range(repeat):
        ident._CACHE.clear()  # the candidates' columns built on each run, as after a new fit
        t0 = time.process_time()
        out = mc.check_model(*args, **kw)
        best = min(best, time.process_time() - t0)
    return out, best


def _stats(check):
    out = {}
    for f in check["findings"]:
        for k in ("statistic", "counts", "unexplained_fraction", "share"):
            out[("finding", f["where"], f["element"], k)] = f[k]
    listed = check["listed"]
    for e, t in listed["map"].items():
        out[("listed", "map", e)] = t
    for p, d in listed["phases"].items():
        for e, t in d.items():
            out[("listed", p, e)] = t
    return out


def _map_statistics(args, kw, fast: bool) -> dict:
    """The identification's T of every candidate on the map's summed spectrum (the check's
    first test, with the evidence of the candidates not found)."""
    import esmpy_hs.physics.identification as ident

    ident.FAST_PATH = fast
    model, data_sum, model_sum = args[:3]
    r = ident.identify(data_sum, model.axis, model.beam_energy, detector=model.detector,
                       known=[*model.elements, *model.stray_elements], explained=model_sum,
                       beyond=kw.get("beyond"))  # fmt: skip
    return {e.element: e.statistic for e in r.evidence}


def _flags(check):
    return {p: sorted(d) for p, d in check["listed"]["not_detected"].items()}


def compare(src: Path, repeat: int) -> None:
    for path in sorted(src.glob("*.pkl")):
        with open(path, "rb") as f:
            args, kw = pickle.load(f)
        old, t_old = _run(args, kw, False, repeat)
        new, t_new = _run(args, kw, True, repeat)
        same = (old["warned"] == new["warned"]
                and [(f["element"], f["where"]) for f in old["findings"]]
                == [(f["element"], f["where"]) for f in new["findings"]]
                and _flags(old) == _flags(new))
        a, b = _stats(old), _stats(new)
        ta, tb = _map_statistics(args, kw, False), _map_statistics(args, kw, True)
        same = same and ta.keys() == tb.keys()
        a.update({("T", e): t for e, t in ta.items()})
        b.update({("T", e): t for e, t in tb.items()})
        rel = 0.0
        for k in a.keys() & b.keys():
            x, y = a[k], b[k]
            rel = max(rel, abs(x - y) / max(abs(x), 1.0))
        print(f"{path.stem:<40} same {same!s:<5} warned {old['warned']} findings "
              f"{sorted({(f['element'], f['where']) for f in old['findings']})} not detected "
              f"{_flags(old)}; max rel. diff {rel:.1e}; cpu "
              f"{t_old:.3f} → {t_new:.3f} s ({len(ta)} candidates' T on the map)", flush=True)
        if not same:
            print("   new: warned", new["warned"], "findings",
                  sorted({(f['element'], f['where']) for f in new['findings']}),
                  "not detected", _flags(new), flush=True)


def _clear() -> None:
    """Forget what the check keeps per energy axis (as for a new map's calibrated axis)."""
    import esmpy_hs.physics.identification as ident

    ident._CACHE.clear()
    getattr(ident, "_NUISANCE", {}).clear()


def dump(src: Path, out: Path, repeat: int) -> None:
    """Run the check of the code on ``sys.path`` on each captured input; pickle the results
    (warnings, findings, flags, statistics, the identification's T of every candidate on
    the map) and the CPU time (``time.process_time``, best of ``repeat``) with the axis's
    columns built anew each time ("cold", as after a new map) and found built ("warm")."""
    import esmpy_hs.signals._model_check as mc

    results = {}
    for path in sorted(src.glob("*.pkl")):
        with open(path, "rb") as f:
            args, kw = pickle.load(f)
        times = {}
        for label, clear in (("cold", True), ("warm", False)):
            best = float("inf")
            for _ in range(repeat):
                if clear:
                    _clear()
                t0 = time.process_time()
                check = mc.check_model(*args, **kw)
                best = min(best, time.process_time() - t0)
            times[label] = best
        _clear()
        results[path.stem] = {
            "warned": check["warned"],
            "findings": [(f["element"], f["where"]) for f in check["findings"]],
            "flags": _flags(check),
            "stats": _stats(check),
            "T": _map_statistics(args, kw, True),
            "times": times,
        }
        print(f"{path.stem:<28} cold {1e3 * times['cold']:6.1f} ms  warm "
              f"{1e3 * times['warm']:6.1f} ms", flush=True)  # fmt: skip
    with open(out, "wb") as f:
        pickle.dump(results, f)


def diff(a_path: Path, b_path: Path) -> None:
    """Compare two :func:`dump` files (e.g. the code before a change and after it)."""
    with open(a_path, "rb") as f:
        a = pickle.load(f)
    with open(b_path, "rb") as f:
        b = pickle.load(f)
    worst = 0.0
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        same = all(x[k] == y[k] for k in ("warned", "findings", "flags")) and (
            x["T"].keys() == y["T"].keys() and x["stats"].keys() == y["stats"].keys())
        sx = {**x["stats"], **{("T", e): t for e, t in x["T"].items()}}
        sy = {**y["stats"], **{("T", e): t for e, t in y["T"].items()}}
        rel = max((abs(sx[k] - sy[k]) / max(abs(sx[k]), 1.0) for k in sx.keys() & sy.keys()),
                  default=0.0)  # fmt: skip
        worst = max(worst, rel)
        print(f"{name:<28} same {same!s:<5} warned {x['warned']} findings "
              f"{sorted(set(x['findings']))}; max rel. diff {rel:.1e}; cpu cold "
              f"{1e3 * x['times']['cold']:.1f} → {1e3 * y['times']['cold']:.1f} ms, warm "
              f"{1e3 * x['times']['warm']:.1f} → {1e3 * y['times']['warm']:.1f} ms",
              flush=True)  # fmt: skip
        if not same:
            print("   after: warned", y["warned"], "findings", sorted(set(y["findings"])),
                  "flags", y["flags"], "before: flags", x["flags"], flush=True)  # fmt: skip
    print(f"largest relative difference {worst:.1e}")


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    if mode == "capture":
        capture(where, sys.argv[3:])
    elif mode == "dump":
        dump(where, Path(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 3)
    elif mode == "diff":
        diff(where, Path(sys.argv[3]))
    else:
        compare(where, int(sys.argv[3]) if len(sys.argv) > 3 else 3)

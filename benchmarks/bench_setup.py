"""Time outside the compiled pass (issue 18): the paths before and after, alternated in one
process.

Not a test: ``python benchmarks/bench_setup.py mem512`` (the 512² × 4096 map at 1 count per
pixel of ``bench_coarse.py``, in memory) or ``python benchmarks/bench_setup.py lazy512``
(``lazy1024`` …: the lazily read map of ``bench_scale.py lazy1024 --size N``, 290 counts per
pixel). Each round runs ``smart_nmf(s, 3)`` with the old paths (``summed_by_labels`` by blocked
products, the chunks' block sums by a sparse product, the first chunk converted twice by
``persist="auto"``) then with the new ones, and prints the fit's set-up, the model check's
pass over the data, the whole call, and whether the two answers are the same bytes.
``--max-iter`` bounds the iterations (the set-up and the check do not depend on it).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def flags(new: bool) -> None:
    from esmpy_hs.nmf import _blocksum, _chunked
    from esmpy_hs.signals import _identify

    _identify.COMPILED_SUMS = new
    _blocksum.COMPILED = new
    _chunked.REUSE_FIRST_CHUNK = new


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--dir", default="/tmp/esmpy_bench")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import esmpy_hs.signals._decomposition as dec
    from esmpy_hs.signals._identify import summed_by_labels

    if args.case.startswith("mem"):
        import bench_coarse

        s = bench_coarse.load_map(args.case, Path(args.dir))[0]
    else:
        import bench_lazy
        import hyperspy.api as hs

        size = int(args.case[4:])
        path = Path(args.dir) / f"map_{size}_290.hspy"
        if not path.exists():
            bench_lazy.generate(path, size, 290.0, 32)
        s = hs.load(path, lazy=True)
    seconds = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    import esmpy_hs.signals._identify as ident

    ident.summed_by_labels = timed("summed_by_labels", summed_by_labels)
    from esmpy_hs.nmf import _chunked

    _chunked.binned_stand_in = timed("binned_stand_in", _chunked.binned_stand_in)
    _chunked.choose_mode = timed("choose_mode", _chunked.choose_mode)
    for cls in (_chunked._LocalMemory, _chunked._LocalStream):
        cls.load = timed(f"load {cls.mode}", cls.load)
    kw = {} if args.max_iter is None else {"max_iter": args.max_iter}
    ref = None
    for r in range(args.rounds):
        for new in (False, True):
            flags(new)
            seconds.clear()
            t0 = time.perf_counter()
            out = dec.smart_nmf(s, 3, print_info=False, progress=False, **kw)
            wall = time.perf_counter() - t0
            est = out["estimator"]
            got = (np.asarray(est.components_).tobytes(), np.asarray(est.H_).tobytes())
            same = "" if ref is None else f", same answer as round 1 old: {got == ref}"
            ref = got if ref is None else ref
            print(f"round {r + 1} {'new' if new else 'old'}: smart_nmf {wall:.2f} s, set-up "
                  f"{est.setup_time_:.2f} s, fit {est.setup_time_ + sum(est.iteration_times_):.2f}"
                  f" s, {est.n_iter_} iterations, summed_by_labels "
                  f"{seconds.get('summed_by_labels', 0.0):.2f} s{same}", flush=True)
            parts = {k: round(v, 2) for k, v in seconds.items() if k != "summed_by_labels"}
            if parts:
                print(f"    lazy set-up parts (s): {parts}", flush=True)
    flags(True)


if __name__ == "__main__":
    main()

"""Timing of the physics layer: building G and recomputing per-phase absorption.

Run with ``python benchmarks/bench_physics.py``. Prints; asserts nothing.
Targets: build G for 12 elements on 2000 channels < 0.5 s; absorption for 3 phases < 50 ms.
"""

from __future__ import annotations

import time

import numpy as np

from esmpy_hs.physics import Specimen, build_G
from esmpy_hs.physics import lines as _lines

ELEMENTS = ["Mg", "Fe", "Ca", "Si", "Al", "O", "Ti", "Cu", "Sm", "Lu", "Nd", "Hf"]
AXIS = {"offset": 0.3, "scale": 0.01, "size": 2000, "units": "keV"}
PHASES = [
    {"Mg": 0.245, "Fe": 0.035, "Ca": 0.031, "Si": 0.219, "Al": 0.024, "O": 0.436, "Cu": 0.05,
     "Hf": 0.01},
    {"Mg": 0.522, "Fe": 0.104, "O": 0.374, "Cu": 0.05},
    {"Mg": 0.020, "Fe": 0.018, "Ca": 0.188, "Si": 0.173, "Al": 0.010, "O": 0.572, "Ti": 0.004,
     "Cu": 0.05, "Sm": 0.007, "Lu": 0.006, "Nd": 0.006},
]  # fmt: skip


def _best(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    specimen = Specimen(100, 4.5, 35)

    def build():
        return build_G(AXIS, 200, ELEMENTS, specimen=specimen)

    # cold: empty atomic-data caches (xraylib look-ups of every line of every element)
    for f in (_lines._element_atomic_data, _lines._vacancies_cached, _lines._all_lines):
        f.cache_clear()
    t = time.perf_counter()
    model = build()
    cold = time.perf_counter() - t
    warm = _best(build, 5)
    print(
        f"build_G, 12 elements x 2000 channels ({len(model.lines)} lines, "
        f"{model.n_columns} columns):"
    )
    print(
        f"  cold caches: {1e3 * cold:7.1f} ms   warm (best of 5): {1e3 * warm:7.1f} ms"
        f"   target < 500 ms"
    )

    W = np.zeros((model.n_columns, len(PHASES)))
    for k, comp in enumerate(PHASES):
        for el, c in comp.items():
            W[model.labels.index(el), k] = c
    W[-2:] = 1e-3
    t_w = _best(lambda: model.G_for_phases(W), 20)
    t_c = _best(lambda: model.G_for_phases(PHASES), 20)
    print("per-phase absorption, 3 phases -> G of shape (3, 2000, 14):")
    print(
        f"  from W: {1e3 * t_w:6.1f} ms   from compositions: {1e3 * t_c:6.1f} ms   target < 50 ms"
    )
    q = model.composition(W, H_sums=[1e6] * 3)
    t_q = _best(lambda: model.composition(W, H_sums=[1e6] * 3), 20)
    print(f"composition(W) for 3 phases: {1e3 * t_q:6.2f} ms")
    print(q.table())


if __name__ == "__main__":
    main()

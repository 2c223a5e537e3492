"""Whether any phase of a fit trades its abundance against its spectrum's scale (issue 13).

Not a test: ``python benchmarks/scan_traded_phases.py [name ...]`` runs the default fit of each
map in ``../shared/data`` (the independent maps, the real map, the vendor files) and of the
reference sample at 293 and 18 counts per pixel, and prints per phase the counts of a pure
pixel over the 99th percentile of the fitted pixels' counts
(``metadata.SmartNMF.pure_counts / pixel_counts``), the abundance shares and the
``TradedPhaseWarning`` raised, if any. Names: the independent maps' folder names,
``reference``, ``real``, ``vendor`` (none: all). The figures are in docs/validation.rst,
"A phase that trades abundance for scale".
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INDEPENDENT = ("paper_N293_narrow_s2", "paper_N293_s1", "paper_N18_s1", "particles_N500_w1")
VENDOR = (("velox_test_SI_16x16.emd", 2), ("bcf_v2_50x50px.bcf", 2),
          ("30x30_instructively_packed_16bit_compressed.bcf", 3))  # fmt: skip


def scan(name: str, s, k: int):
    """Fit ``s`` with k phases and print the ratios; returns the quantification."""
    from esmpy_hs import TradedPhaseWarning
    from esmpy_hs.signals._record import read_record

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False)
    rec = read_record(s)
    q = s.quantify_phases()
    traded = [str(w.message)[:140] for w in caught if issubclass(w.category, TradedPhaseWarning)]
    ratio = rec.pure_counts / rec.pixel_counts
    share = rec.H_sums / rec.H_sums.sum()
    print(f"{name:28s} k={k} it={rec.n_iter} pure/p99 {np.round(ratio, 2).tolist()} abundance "
          f"{np.round(100 * share, 3).tolist()} %; TradedPhaseWarning: {traded or 'none'}",
          flush=True)  # fmt: skip
    return q


def main(names: list[str]) -> None:
    import hyperspy.api as hs
    from validate_calibration import load_independent

    from esmpy_hs.datasets import reference_sample

    for n in INDEPENDENT:
        if names and n not in names:
            continue
        s, k = load_independent(DATA / "independent" / n)
        q = scan(n, s, k)
        if "Ca" in q.elements:
            c = q.counts[q.elements.index("Ca")]
            at = [q.atomic_percent[name].get("Ca", float("nan")) for name in q.phase_names]
            print(f"   Ca counts per phase {np.round(c).tolist()}, shares "
                  f"{np.round(c / c.sum(), 3).tolist()}, at.% {np.round(at, 2).tolist()}")
    if not names or "reference" in names:
        for dose in (293, 18):
            scan(f"reference {dose}", reference_sample(dose, random_state=0), 3)
    if not names or "real" in names:
        s = hs.load(str(DATA / "71GPa_experimental_data.hspy"))
        s.set_signal_type("EDS_ESMPY")
        scan("real map", s, 3)
    if not names or "vendor" in names:
        for f, k in VENDOR:
            x = hs.load(str(DATA / "vendor" / f))
            s = next(y for y in (x if isinstance(x, list) else [x]) if y.data.ndim == 3)
            s.set_signal_type("EDS_ESMPY")
            scan(f, s, k)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Time of ``identify_elements`` on a 512 × 512 × 4096 map at about 1 count per pixel (issue #13).

The map is the reference sample's spectra (``esmpy_hs.datasets.reference_spectra``) drawn as
Poisson counts on a 512 × 512 grid of uint8 (1 GiB), on a 4096-channel axis of 5 eV; the
elements are removed from the metadata, so identification runs on the recorded axis and
detector (no calibration). Prints the wall time of the whole call (summing the map included)
and of the detection core alone.

Run: ``python benchmarks/bench_identify.py`` (about 1.1 GiB of memory).
"""

from __future__ import annotations

import time

import numpy as np


def main() -> None:
    import hyperspy.api as hs

    from esmpy_hs.datasets import reference_sample

    small = reference_sample(dose=1.0, shape=(8, 8), noise=False)
    e_small = small.axes_manager.signal_axes[0].axis
    mean = small.data.reshape(-1, small.data.shape[-1]).mean(axis=0)
    # the same spectrum on 4096 channels of 5 eV from 0.3 keV
    energies = 0.3 + 0.005 * np.arange(4096)
    rate = np.interp(energies, e_small, mean, left=0, right=0) / 2.0
    rate *= 1.0 / rate.sum()  # 1 count per pixel
    rng = np.random.default_rng(0)
    data = np.zeros((512, 512, 4096), dtype=np.uint8)
    for i in range(512):  # row by row: the draw would otherwise need 8 GiB of float64
        data[i] = rng.poisson(rate, size=(512, 4096))
    s = hs.signals.Signal1D(data)
    s.set_signal_type("EDS_ESMPY")
    ax = s.axes_manager.signal_axes[0]
    ax.offset, ax.scale, ax.units = 0.3, 0.005, "keV"
    s.metadata.Acquisition_instrument = small.metadata.Acquisition_instrument.deepcopy()
    print(f"map {data.shape} uint8, {data.sum() / 512**2:.3f} counts per pixel")
    t0 = time.perf_counter()
    r = s.identify_elements()
    dt = time.perf_counter() - t0
    print(r.table())
    print(f"identify_elements: {dt:.2f} s in all, of which the detection core {r.seconds:.2f} s")


if __name__ == "__main__":
    main()

"""What do the extra phases of ``estimate_n_phases`` look like? (issue 16, analysis, not a test)

For one count split of a map (the binned counts of ``estimate_n_phases``), fits k = 2 … K on
half A exactly as the curve does (``max_iter`` 100, the map's own model) and reports, for each k:
the held-out deviance per count on half B; each phase's share of the abundance and of the counts
and its composition (at.%); the phase of the k-fit that has no close partner in the (k − 1)-fit;
where the held-out gain from k − 1 to k lies — its share in the pixels where the new phase holds
≥ 50 % (in space) and its share in the channels within ±1 FWHM of a line (in energy) against the
share of those channels in all counts; and the held-out gain per held-out count of the new phase.
Saves the maps and spectra of each k as PNG (``--out``).

    python benchmarks/analyse_extra_phases.py real
    python benchmarks/analyse_extra_phases.py independent/paper_N293_narrow_s2 --kmax 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def load(name: str):
    import hyperspy.api as hs

    from esmpy_hs.datasets import reference_sample

    if name.startswith("sim"):
        from tests.signals.test_n_phases import k_phase_map

        k, dose, seed = name.split(":")[1:]
        return k_phase_map(int(k), float(dose), int(seed))
    if name.startswith("reference"):
        return reference_sample(float(name.split(":")[1]), random_state=1)
    path = DATA / "71GPa_experimental_data.hspy" if name == "real" else DATA / name / "sample.hspy"
    s = hs.load(str(path))
    s.set_signal_type("EDS_ESMPY")
    return s


def per_cell_deviance(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    Y = Y.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(Y > 0, Y * np.log(Y / np.maximum(M, 1e-300)), 0.0)
    return 2 * (t - Y + M)


def main() -> None:
    from esmpy_hs.nmf._split import split_counts
    from esmpy_hs.signals._nphases import prepare

    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--kmax", type=int, default=5)
    p.add_argument("--kmin", type=int, default=2)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--out", default="/tmp/extra_phases")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    s = load(a.name)
    ho = prepare(s)
    A, B = split_counts(ho.X, np.random.default_rng(0))
    B = B.astype(np.float64)
    model = ho.model
    E = model.energies
    from esmpy_hs.nmf._split import window_matrix
    from esmpy_hs.signals._nphases import line_windows

    P = window_matrix(line_windows(model), len(E)).toarray()
    tag = a.name.replace("/", "_").replace(":", "_")
    print(f"{a.name}: binned {ho.b} × {ho.b} → {ho.shape}, {ho.X.shape[1]} channels, "
          f"{ho.X.sum() / ho.X.shape[0]:.0f} counts per binned pixel")  # fmt: skip
    fits = {}
    for k in range(a.kmin, a.kmax + 1):
        est = ho.estimator(k, max_iter=a.max_iter)
        est.fit(A)
        M = est.H_.T @ est.components_
        dcell = per_cell_deviance(B, M)
        q = model.composition(est.W_, est.H_.sum(axis=1))
        fits[k] = (est, M, dcell, q)
    els = list(fits[a.kmin][3].elements)
    import matplotlib.pyplot as plt

    for k in range(a.kmin, a.kmax + 1):
        est, M, dcell, q = fits[k]
        ab = est.H_.sum(axis=1) / est.H_.sum()
        cnt = est.H_.sum(axis=1) * est.components_.sum(axis=1)
        cnt = cnt / cnt.sum()
        print(f"k = {k}: held-out deviance per count {dcell.sum() / B.sum():.5f}, "
              f"{est.n_iter_} it.")  # fmt: skip
        for j in range(k):
            fr = q.atomic_fractions[:, j]
            comp = ", ".join(f"{e} {100 * fr[i]:.1f}" for i, e in enumerate(els) if fr[i] > 0.005)
            pure = float((est.H_[j] >= 0.5).mean())
            print(f"    phase {j}: abundance {100 * ab[j]:.1f} %, counts {100 * cnt[j]:.1f} %, "
                  f"pixels ≥ 0.5: {100 * pure:.1f} %; {comp}")  # fmt: skip
        if k > a.kmin:
            prev = fits[k - 1]
            # how much the k-th phase changes the modelled spectrum of each pixel: total variation
            # distance between the k and k − 1 models, on the energy windows of the score
            Mw1, Mw0 = M @ P, prev[1] @ P
            tv = 0.5 * np.abs(Mw1 - Mw0).sum(axis=1) / np.maximum(Mw0.sum(axis=1), 1e-300)
            qs = np.percentile(tv, [50, 90, 99, 99.9])
            rows = sorted(model.element_rows.values())
            ck = est.W_[rows] @ est.H_
            ck = ck / np.maximum(ck.sum(axis=0, keepdims=True), 1e-300)
            c0 = prev[0].W_[rows] @ prev[0].H_
            c0 = c0 / np.maximum(c0.sum(axis=0, keepdims=True), 1e-300)
            dc = 50 * np.abs(ck - c0).sum(axis=0)  # at.%, half the L1 distance
            n4 = max(4, int(0.001 * dc.size))
            print(
                f"  composition change per pixel (at.%): median {np.median(dc):.2f}, 99 % "
                f"{np.percentile(dc, 99):.2f}, {n4}-th largest {np.sort(dc)[-n4]:.2f}, max "
                f"{dc.max():.2f}"
            )
            print(
                f"  TV(k, k − 1) per pixel: median {qs[0]:.4f}, 90 % {qs[1]:.4f}, 99 % "
                f"{qs[2]:.4f}, 99.9 % {qs[3]:.4f}, max {tv.max():.4f}; pixels > 0.05: "
                f"{100 * (tv > 0.05).mean():.1f} %, > 0.1: {100 * (tv > 0.1).mean():.1f} %"
            )
            # the phase of this fit farthest (spectral angle) from every phase of the k − 1 fit
            C1 = est.components_ / np.linalg.norm(est.components_, axis=1, keepdims=True)
            C0 = prev[0].components_ / np.linalg.norm(prev[0].components_, axis=1, keepdims=True)
            ang = np.degrees(np.arccos(np.clip(C1 @ C0.T, -1, 1)))
            new = int(np.argmax(ang.min(axis=1)))
            # angle between the new phase and the closest phase of the same fit
            Cs = C1 @ C1.T
            np.fill_diagonal(Cs, -1)
            gain = prev[2] - dcell  # per cell held-out gain (pixels × channels)
            total_gain = gain.sum()
            where = est.H_[new] >= 0.5
            pix_gain = gain.sum(axis=1)
            spatial = pix_gain[where].sum() / total_gain if total_gain != 0 else np.nan
            # in energy: the gain per channel, and the share near peaks (±1 FWHM of the lines
            # found by the summed data's local maxima above the continuum)
            ch_gain = gain.sum(axis=0)
            order = np.argsort(ch_gain)[::-1][:8]
            print(f"  new phase {new}: {ang.min(axis=1)[new]:.2f}° from the closest phase of the "
                  f"k − 1 fit, {np.degrees(np.arccos(Cs[new].max())):.2f}° from the closest "
                  f"other phase of this fit")  # fmt: skip
            print(f"  held-out gain k − 1 → k: {total_gain:.0f} (per held-out count "
                  f"{total_gain / B.sum():.5f}); in the {100 * where.mean():.1f} % of pixels "
                  f"where the new phase ≥ 0.5: {100 * spatial:.0f} %; per held-out count of "
                  f"the new phase {total_gain / max((est.H_[new][:, None] * M).sum(), 1):.4f}"
                  )  # fmt: skip
            print("  channels of largest gain (keV: share of gain): " + ", ".join(
                f"{E[c]:.2f}: {100 * ch_gain[c] / total_gain:.0f} %" for c in order))  # fmt: skip
            # gain map and spectrum
            fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
            ax[0].imshow(est.H_[new].reshape(ho.shape))
            ax[0].set_title(f"k={k}: new phase {new} abundance")
            ax[1].imshow(pix_gain.reshape(ho.shape), cmap="RdBu_r")
            ax[1].set_title("held-out gain per pixel")
            ax[2].plot(E, ch_gain, "k", lw=0.7)
            ax[2].set_xlabel("keV")
            ax[2].set_title("held-out gain per channel")
            fig.tight_layout()
            fig.savefig(out / f"{tag}_k{k}_gain.png", dpi=90)
            plt.close(fig)
        fig, ax = plt.subplots(2, k, figsize=(3 * k, 5.5), squeeze=False)
        for j in range(k):
            ax[0, j].imshow(est.H_[j].reshape(ho.shape), vmin=0, vmax=1)
            ax[1, j].semilogy(E, est.components_[j], lw=0.6)
        fig.tight_layout()
        fig.savefig(out / f"{tag}_k{k}.png", dpi=80)
        plt.close(fig)


if __name__ == "__main__":
    main()

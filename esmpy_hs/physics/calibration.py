"""Detector self-calibration: energy axis and peak widths fitted on a summed spectrum.

A map's summed spectrum holds every recorded count, so it pins the few global detector
parameters far better than any pixel. :func:`calibrate_detector` fits, with the Poisson
likelihood,

* the energy axis: the true energy of channel i is ``(offset + δ) + i · scale · g``
  (``δ`` = ``offset_shift_eV``, ``g`` = ``gain``; ``offset``/``scale`` as recorded);
* the width law FWHM(E)² = c0 + c1·E + c2·E² (eV², E in keV; :class:`Detector`
  ``fwhm_model="quadratic"``): electronic noise, Fano term and an incomplete-charge term with
  c2 ≥ 0. Both the Fiori
  law (c2 = 0) and a linear law FWHM = a·E + b (c2 = a²) are members of the family.
  It is parameterised by the FWHM at O Kα, the FWHM at Mn Kα and c2 ≥ 0.

The spectrum model for fixed detector parameters θ is Σ_k a_k · column_k(θ) + continuum: the
lines that :func:`build_G` puts on the axis (line energies, emission cross sections σ, detector
efficiency ε and, with a specimen thickness, the thin-film absorption of the composition that
the first solve's amplitudes suggest; Gaussian peaks integrated over the channels, as in G),
and the two continuum columns B0·ε·A and B1·ε·A of G. The amplitudes a_k ≥ 0 are nuisance
parameters, solved for each θ by a Poisson non-negative least squares (iteratively reweighted
NNLS with weights 1/μ, whose fixed point is the Poisson maximum likelihood). θ is found in four
steps:

1. a scan of the offset at the recorded widths, with one amplitude per column of G (an element's
   K, L and M lines tied by their tabulated ratios, so that a trace element's weak family cannot
   take a line the model lacks);
2. channels that no modelled line explains are left out (see :meth:`_Problem.unexplained`: a
   missing element such as a grid's Cu, sum or escape peaks), the scan repeated until none is
   found;
3. a bounded Nelder-Mead search of all free parameters on the profile deviance, the check of
   step 2 repeated after it;
4. the same search with one amplitude per line family (element × K/L/M), so that errors in the
   tabulated ratios between families and in their absorption do not pull on positions and
   widths.

Uncertainties are 1σ from the inverse Fisher information of all parameters (θ and the active
amplitudes) at the optimum, J = Dᵀ diag(1/μ) D with D = ∂μ/∂(θ, a) (finite differences for θ),
inflated by √(deviance / degrees of freedom) when the model does not describe the spectrum to
within Poisson noise (quasi-likelihood); they are statistical only.

Guard rails: fewer than three separated peaks with enough counts, too few counts, a fit at the
edge of its search range, or an offset/width that the data leave uncertain (σ(offset) > 10 eV,
σ(FWHM)/FWHM > 20 %) → the recorded values are kept (``applied=False``) and ``message`` says why;
an offset moved by more than 50 eV or a width changed by more than 50 % is kept but reported in
``warnings``. HyperSpy-free.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import curve_fit, minimize, nnls
from scipy.special import erf

from esmpy_hs._units import to_float

# one BLAS thread for the small linear algebra (threadpoolctl, installed with scikit-learn;
# the libraries looked up once per process)
from esmpy_hs.nmf._blas import AVAILABLE as _ONE_THREAD_AVAILABLE
from esmpy_hs.nmf._blas import one_blas_thread
from esmpy_hs.physics.absorption import Specimen, absorption_factor
from esmpy_hs.physics.continuum import continuum_basis
from esmpy_hs.physics.detector import Detector
from esmpy_hs.physics.model import EnergyAxis, build_G

__all__ = ["REPORT_LINES", "Calibration", "calibrate_detector"]

#: Energies (keV) at which the FWHM is reported (xraylib Kα1 energies).
REPORT_LINES: dict[str, float] = {"C Ka": 0.2774, "O Ka": 0.5249, "Mn Ka": 5.8987}

_E_LO, _E_HI = REPORT_LINES["O Ka"], REPORT_LINES["Mn Ka"]  # width anchors
_SHIFT_RANGE_EV = 150.0  # offset search range, ± eV
_GAIN_RANGE = 0.005  # gain search range, ± relative (± 40 eV at 8 keV)
_WIDTH_RANGE = (0.4, 2.5)  # width search range, × recorded FWHM
_C2_MAX = 1600.0  # c2 search range, eV²/keV² (FWHM grows by up to 40 eV/keV)
_MIN_PEAK_COUNTS = 200.0
_MIN_PEAK_Z = 20.0  # counts / √(counts + background) of a usable peak
_MIN_TOTAL_PEAK_COUNTS = 2000.0
_WARN_SHIFT_EV = 50.0
_WARN_WIDTH = 0.5
_WARN_PEAK_EV = 5.0
_PEAK_CHECK_COUNTS = 1e4
_MAX_SIGMA_SHIFT_EV = 10.0
_MAX_SIGMA_WIDTH = 0.2
_LOW_CUT_KEV = 0.25
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_detector` (frozen).

    Attributes
    ----------
    offset_shift_eV : float
        Added to the recorded energy of channel 0 (eV).
    gain : float
        Multiplies the recorded channel width (1 = unchanged).
    fwhm_quadratic : tuple of float
        (c0, c1, c2) of FWHM² = c0 + c1·E + c2·E² (eV², eV²/keV, eV²/keV²).
    fwhm_eV, file_fwhm_eV : dict
        FWHM (eV) at C Kα, O Kα and Mn Kα (:data:`REPORT_LINES`), calibrated and as recorded.
    uncertainty : dict
        1σ of ``offset_shift_eV``, ``gain`` and the FWHM at each reported line
        (``"fwhm C Ka"``, ...), in the same units; 0 for a parameter held fixed.
    fitted : tuple of str
        Free parameters: some of ``"offset"``, ``"gain"``, ``"width"`` (the FWHM at O Kα and
        Mn Kα), ``"curvature"`` (√c2).
    applied : bool
        False when the recorded values are kept (then :meth:`axis` and :meth:`detector` return
        their arguments unchanged); ``message`` says why.
    message : str
        One line: what was done, or why nothing was.
    warnings : tuple of str
        Large corrections (offset > 50 eV, width change > 50 %).
    deviance_file, deviance : float
        Poisson deviance of the summed spectrum under the calibration model with the recorded
        and with the calibrated detector parameters.
    degrees_of_freedom : int
        Channels minus fitted parameters and active amplitudes.
    counts : float
        Counts in the fitted channels of the summed spectrum.
    n_peaks : int
        Separated peaks with enough counts to calibrate on.
    masked_channels : int
        Channels left out because no modelled line explains their counts (a missing element,
        sum or escape peaks); both deviances are over the other channels.
    peak_offsets_eV : dict
        Check of the linear axis: for each strong line family (≥ 10⁴ counts), the centre of a
        Gaussian fitted to the data minus that of the same Gaussian fitted to the calibrated
        model, on the same channels (eV). A detector whose axis is not linear leaves offsets
        that no offset and gain remove; above 5 eV they are reported in ``warnings`` (when the
        offset and gain were fitted).
    seconds : float
        Time the calibration took.
    curves : dict or None
        ``{"channels": (first, stop), "data": summed counts, "model_file": best fit with the
        recorded detector, "model": best fit with the calibrated one}`` on the fitted channels
        (not serialised; None after :meth:`from_dict`).
    figure : matplotlib figure or None
        Set by ``s.calibrate_detector(plot=True)``.
    """

    offset_shift_eV: float = 0.0
    gain: float = 1.0
    fwhm_quadratic: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fwhm_eV: dict[str, float] = field(default_factory=dict)
    file_fwhm_eV: dict[str, float] = field(default_factory=dict)
    uncertainty: dict[str, float] = field(default_factory=dict)
    fitted: tuple[str, ...] = ()
    applied: bool = False
    message: str = ""
    warnings: tuple[str, ...] = ()
    deviance_file: float = float("nan")
    deviance: float = float("nan")
    degrees_of_freedom: int = 0
    counts: float = 0.0
    n_peaks: int = 0
    masked_channels: int = 0
    peak_offsets_eV: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    curves: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    figure: Any = field(default=None, compare=False, repr=False)

    def axis(self, axis: Any, units: str | None = None) -> EnergyAxis:
        """The calibrated version of ``axis`` (same channels; keV)."""
        ax = EnergyAxis.from_any(axis, units)
        if not self.applied:
            return ax
        return EnergyAxis(ax.offset + self.offset_shift_eV / 1000.0, ax.scale * self.gain, ax.size)

    def detector(self, detector: Detector | None = None) -> Detector:
        """``detector`` (default ``Detector()``) with the calibrated width law."""
        det = Detector() if detector is None else detector
        if not self.applied:
            return det
        d = det.to_dict()
        d["fwhm_model"] = "quadratic"
        d["fwhm_quadratic"] = list(self.fwhm_quadratic)
        return Detector.from_dict(d)

    def summary(self) -> str:
        """One line: the corrections and the FWHM at C Kα, O Kα and Mn Kα."""
        if not self.applied:
            return f"calibration: recorded values kept ({self.message})"
        u = self.uncertainty
        widths = ", ".join(
            f"{name.split()[0]} {self.fwhm_eV[name]:.1f} ± {u.get('fwhm ' + name, 0.0):.1f}"
            for name in REPORT_LINES
        )
        return (
            f"calibration: offset {self.offset_shift_eV:+.1f} ± "
            f"{u.get('offset_shift_eV', 0.0):.1f} eV, gain {self.gain:.5f} ± "
            f"{u.get('gain', 0.0):.5f}, FWHM (eV) {widths}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (floats, str, lists) for metadata; see :meth:`from_dict`."""
        return {
            "offset_shift_eV": float(self.offset_shift_eV),
            "gain": float(self.gain),
            "fwhm_quadratic": [float(v) for v in self.fwhm_quadratic],
            "fwhm_eV": {k: float(v) for k, v in self.fwhm_eV.items()},
            "file_fwhm_eV": {k: float(v) for k, v in self.file_fwhm_eV.items()},
            "uncertainty": {k: float(v) for k, v in self.uncertainty.items()},
            "fitted": list(self.fitted),
            "applied": bool(self.applied),
            "message": str(self.message),
            "warnings": list(self.warnings),
            "deviance_file": float(self.deviance_file),
            "deviance": float(self.deviance),
            "degrees_of_freedom": int(self.degrees_of_freedom),
            "counts": float(self.counts),
            "n_peaks": int(self.n_peaks),
            "masked_channels": int(self.masked_channels),
            "peak_offsets_eV": {k: float(v) for k, v in self.peak_offsets_eV.items()},
            "seconds": float(self.seconds),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict` output."""
        d = dict(d)
        d["fwhm_quadratic"] = tuple(float(v) for v in d.get("fwhm_quadratic", (0.0, 0.0, 0.0)))
        d["fitted"] = tuple(d.get("fitted", ()))
        d["warnings"] = tuple(d.get("warnings", ()))
        for key in ("fwhm_eV", "file_fwhm_eV", "uncertainty", "peak_offsets_eV"):
            d[key] = {str(k): float(v) for k, v in dict(d.get(key, {})).items()}
        known = set(cls.__dataclass_fields__) - {"curves", "figure"}
        return cls(**{k: v for k, v in d.items() if k in known})


def _quadratic_from_anchors(w_lo: float, w_hi: float, c2: float) -> tuple[float, float, float]:
    """(c0, c1, c2) of the law through FWHM w_lo at O Kα and w_hi at Mn Kα (eV units)."""
    c1 = (w_hi**2 - w_lo**2 - c2 * (_E_HI**2 - _E_LO**2)) / (_E_HI - _E_LO)
    c0 = w_lo**2 - c1 * _E_LO - c2 * _E_LO**2
    return float(c0), float(c1), float(c2)


def _fwhm_eV(coef: Sequence[float], energy_keV: ArrayLike) -> NDArray[np.float64]:
    e = np.asarray(energy_keV, dtype=np.float64)
    return np.sqrt(np.maximum(coef[0] + (coef[1] + coef[2] * e) * e, 1.0))


def _law_of(detector: Detector) -> tuple[float, float, float]:
    """(c0, c1, c2) in eV units equivalent to the detector's width law (exact for all three)."""
    if detector.fwhm_model == "quadratic":
        return tuple(float(v) for v in detector.fwhm_quadratic)  # type: ignore[return-value]
    if detector.fwhm_model == "linear":
        a, b = detector.fwhm_linear
        b_eV, a_eV = 1000.0 * b, 1000.0 * a
        return b_eV**2, 2 * a_eV * b_eV, a_eV**2
    w = detector.resolution_mnka_eV
    return w**2 - 2500.0 * REPORT_LINES["Mn Ka"], 2500.0, 0.0


def _weighted_nnls(A: NDArray, y: NDArray, w: NDArray, ridge: float = 1e-12) -> NDArray:
    """argmin_{a ≥ 0} Σ w (A a − y)², through the m × m Cholesky factor of AᵀWA (m ≪ n);
    ``ridge`` is added to the diagonal of the normalised AᵀWA (also used by
    :mod:`esmpy_hs.physics.identification`)."""
    Aw = A * w[:, None]
    # a threaded BLAS on these small matrices can be 1000× slower on a loaded machine (thread
    # oversubscription): BLAS is limited to one thread when threadpoolctl is there, else einsum
    M = A.T @ Aw if _ONE_THREAD_AVAILABLE else np.einsum("ij,ik->jk", A, Aw)
    b = y @ Aw
    scale = np.sqrt(np.maximum(np.diag(M), 1e-300))
    Ms = M / np.outer(scale, scale) + ridge * np.eye(M.shape[0])
    try:
        R = np.linalg.cholesky(Ms).T  # Ms = Rᵀ R
    except np.linalg.LinAlgError:
        a, _ = nnls(A * np.sqrt(w)[:, None], y * np.sqrt(w), maxiter=50 * A.shape[1])
        return a
    z = np.linalg.solve(R.T, b / scale)
    a_s, _ = nnls(R, z, maxiter=50 * A.shape[1])
    return a_s / scale


def _poisson_nnls(A: NDArray, y: NDArray, a0: NDArray | None, n_iter: int = 30) -> NDArray:
    """argmin_{a ≥ 0} Poisson deviance of y under A·a (IRLS with weights 1/μ)."""
    floor = 1e-3 * max(float(y.mean()), 1e-12)
    if a0 is None:
        a = _weighted_nnls(A, y, 1.0 / np.maximum(y, 1.0))
    else:
        a = a0.copy()
    for _ in range(n_iter):
        mu = np.maximum(A @ a, floor)
        a_new = _weighted_nnls(A, y, 1.0 / mu)
        change = np.abs(a_new - a).max() / max(float(np.abs(a_new).max()), 1e-12)
        a = a_new
        if change < 1e-6:
            break
    return a


def _deviance(y: NDArray, mu: NDArray) -> float:
    mu = np.maximum(mu, 1e-300)
    pos = y > 0
    return float(2.0 * (np.sum(y[pos] * np.log(y[pos] / mu[pos])) - np.sum(y - mu)))


class _Problem:
    """The calibration model on the fitted channels for trial detector parameters."""

    def __init__(self, axis: EnergyAxis, c0: int, y: NDArray, beam_energy: float,
                 lines: Sequence, line_columns: Sequence[int], detector: Detector,
                 pivot: float) -> None:  # fmt: skip
        self.axis, self.c0, self.y = axis, c0, y
        self.mask = np.ones(y.size, dtype=bool)  # channels that enter the likelihood
        self.n = y.size
        self.e0 = beam_energy
        idx = np.arange(c0, c0 + self.n + 1, dtype=np.float64) - 0.5  # edge indices, full axis
        self.edge_index = idx
        self.centre_index = np.arange(c0, c0 + self.n, dtype=np.float64)
        self.pivot = pivot  # channel index (full axis) where the shift is measured
        energies = axis.offset + axis.scale * self.centre_index
        # efficiency on a fine grid: the axis moves by at most a few channels
        grid = np.linspace(max(energies[0] - 0.3, 1e-3), energies[-1] + 0.3, 4000)
        self.eff_grid, self.eff_vals = grid, detector.efficiency(grid)
        self.cont_factor = self.eff_vals  # ε, times A(E) once a composition is known
        # one column per element (per line for a stray element's column, as in G); weak lines
        # (< 0.2 % of their column) left out
        keys: dict[Any, int] = {}
        E, w, g, fam = [], [], [], []
        eff_lines = detector.efficiency([x.energy_keV for x in lines]) if lines else []
        for x, eff, col in zip(lines, eff_lines, line_columns, strict=True):
            key = col
            keys.setdefault(key, len(keys))
            E.append(x.energy_keV)
            w.append(x.cross_section * eff)
            g.append(keys[key])
            fam.append((x.element, x.family))
        E_arr, w_arr, g_arr = np.array(E), np.array(w), np.array(g, dtype=np.intp)
        tot = np.bincount(g_arr, weights=w_arr, minlength=len(keys)) if len(keys) else np.zeros(0)
        keep = w_arr >= 2e-3 * tot[g_arr] if len(keys) else np.zeros(0, bool)
        self.line_E, self.line_w, self.line_g = E_arr[keep], w_arr[keep], g_arr[keep]
        self.line_w0 = self.line_w.copy()  # without absorption
        self.line_el = [x.element for x, k in zip(lines, keep, strict=True) if k]
        self.line_keys = {
            "column": [c for c, k in zip(line_columns, keep, strict=True) if k],
            "family": [f for f, k in zip(fam, keep, strict=True) if k],
        }
        self.groups = list(keys)
        self.n_groups = len(keys)
        # families (element, K/L/M): their main line and share of their column
        fams = [f for f, k in zip(fam, keep, strict=True) if k]
        self.families = list(dict.fromkeys(fams))
        self.family_E = np.zeros(len(self.families))
        self.family_share = np.zeros(len(self.families))
        self.family_group = np.zeros(len(self.families), dtype=np.intp)
        for i, f in enumerate(self.families):
            sel = np.array([j for j, ff in enumerate(fams) if ff == f])
            self.family_E[i] = self.line_E[sel[np.argmax(self.line_w[sel])]]
            self.family_group[i] = self.line_g[sel[0]]
            self.family_share[i] = self.line_w[sel].sum() / tot[self.line_g[sel[0]]]

    def regroup(self, kind: str) -> None:
        """One amplitude per column of G (``"column"``) or per line family (``"family"``)."""
        keys = self.line_keys[kind]
        index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        self.line_g = np.array([index[k] for k in keys], dtype=np.intp)
        self.n_groups = len(index)

    # θ = (shift at the pivot channel, eV; gain; FWHM at O Kα, eV; FWHM at Mn Kα, eV; c2)
    def energies_of(self, shift_eV: float, gain: float, index: NDArray) -> NDArray:
        ax = self.axis
        offset = ax.offset + shift_eV / 1000.0 - (gain - 1.0) * self.pivot * ax.scale
        return offset + index * ax.scale * gain

    def offset_shift(self, shift_eV: float, gain: float) -> float:
        """Shift of channel 0 (eV) from the shift at the pivot channel."""
        return shift_eV - (gain - 1.0) * self.pivot * self.axis.scale * 1000.0

    def columns(self, theta: Sequence[float]) -> NDArray:
        """(n, groups + 2) columns: the peak groups then the continuum, for θ."""
        shift, gain, w_lo, w_hi, c2 = theta
        n = self.n
        offset = self.axis.offset + shift / 1000.0 - (gain - 1.0) * self.pivot * self.axis.scale
        scale = self.axis.scale * gain
        first = offset + self.c0 * scale  # centre of the first fitted channel
        out = np.zeros((n, self.n_groups + 2))
        if self.n_groups:
            sigma = _fwhm_eV(_quadratic_from_anchors(w_lo, w_hi, c2), self.line_E) / 1000.0
            sigma = sigma * _FWHM_TO_SIGMA
            # each peak on ± 6σ around its channel (the Gaussian beyond holds < 2e-9)
            half = int(np.ceil(6.0 * float(sigma.max()) / scale)) + 1
            k = np.rint((self.line_E - first) / scale).astype(np.int64)  # (L,)
            j = np.arange(-half, half + 2)
            ch = k[:, None] + j[None, :]  # edge e below channel ch: first + (ch - 0.5)·scale
            edges = first + (ch - 0.5) * scale
            z = (edges - self.line_E[:, None]) / (np.sqrt(2.0) * sigma[:, None])
            contrib = 0.5 * np.diff(erf(z), axis=1) * self.line_w[:, None]  # (L, 2 half + 1)
            chan = ch[:, :-1]
            ok = (chan >= 0) & (chan < n)
            flat = (chan * self.n_groups + self.line_g[:, None])[ok]
            out[:, : self.n_groups] = np.bincount(
                flat, weights=contrib[ok], minlength=n * self.n_groups
            ).reshape(n, self.n_groups)
        centres = first + np.arange(n) * scale
        out[:, self.n_groups :] = (
            continuum_basis(np.maximum(centres, 1e-3), self.e0)
            * np.interp(centres, self.eff_grid, self.cont_factor)[:, None]
        )
        return out

    def absorb_continuum(self, a: NDArray, An_norm: NDArray, elements: Sequence[str],
                         specimen: Specimen) -> None:  # fmt: skip
        """Multiply the continuum by the absorption A(E) of the composition that the peak
        amplitudes ``a`` suggest (atoms ∝ counts / Σσε of the element's strongest family)."""
        atoms: dict[str, float] = {}
        for i, (el, _fam) in enumerate(self.families):
            j = self.family_group[i]
            if el not in elements or not An_norm[j] > 0 or not self.family_share[i] > 0:
                continue
            # counts of the family / its Σσε ∝ atoms (the strongest estimate of each element)
            n_at = float(a[j]) * self.family_share[i] / (self.family_share[i] * An_norm[j])
            atoms[el] = max(atoms.get(el, 0.0), n_at)
        atoms = {el: v for el, v in atoms.items() if v > 0}
        if not atoms:
            return
        absorbed = np.array([el in elements for el in self.line_el], dtype=bool)
        a_lines = np.asarray(absorption_factor(atoms, self.line_E, specimen), dtype=np.float64)
        self.line_w = np.where(absorbed, self.line_w0 * a_lines, self.line_w0)
        self.cont_factor = self.eff_vals * np.asarray(
            absorption_factor(atoms, self.eff_grid, specimen)
        )

    def solve(self, theta, a0=None, with_norm: bool = False):
        A = self.columns(theta)
        norm = A.sum(axis=0)
        norm[norm <= 0] = 1.0
        An = A / norm
        m = self.mask
        a = _poisson_nnls(An[m], self.y[m], a0)
        dev = _deviance(self.y[m], An[m] @ a)
        if with_norm:
            return dev, a, An, norm
        return dev, a, An

    def unexplained(self, theta, a: NDArray, An: NDArray, z_min: float = 10.0) -> NDArray:
        """Channels near a net excess of counts that no modelled line explains.

        For each channel, over ± 1 FWHM: excess = Σ(y − μ), z = excess/√Σμ. A mis-set position
        or width leaves a +/− residual whose sum over such a window is small next to the
        modelled peak nearby; a line missing from the model leaves its whole area. Flagged:
        z > ``z_min`` and excess > half the modelled peak counts within ± 3 FWHM; returned as a
        mask of the flagged windows (True = unexplained).
        """
        shift, gain, w_lo, w_hi, c2 = theta
        centres = self.energies_of(shift, gain, self.centre_index)
        fw = _fwhm_eV(_quadratic_from_anchors(w_lo, w_hi, c2), centres) / 1000.0
        mu = An @ a
        ng = self.n_groups
        peak = An[:, :ng] @ a[:ng]
        cy = np.concatenate([[0.0], np.cumsum(self.y)])
        cm = np.concatenate([[0.0], np.cumsum(mu)])
        cp = np.concatenate([[0.0], np.cumsum(peak)])
        lo = np.searchsorted(centres, centres - fw, side="left")
        hi = np.searchsorted(centres, centres + fw, side="right")
        lo3 = np.searchsorted(centres, centres - 3 * fw, side="left")
        hi3 = np.searchsorted(centres, centres + 3 * fw, side="right")
        excess = (cy[hi] - cy[lo]) - (cm[hi] - cm[lo])
        z = excess / np.sqrt(np.maximum(cm[hi] - cm[lo], 1.0))
        flag = (z > z_min) & (excess > 0.5 * (cp[hi3] - cp[lo3]))
        out = np.zeros(self.n, dtype=bool)
        for i in np.nonzero(flag)[0]:
            out[lo[i] : hi[i]] = True
        return out


def calibrate_detector(
    axis: Any,
    spectrum: ArrayLike,
    beam_energy: float | str,
    elements: Sequence[str],
    *,
    detector: Detector | None = None,
    specimen: Specimen | None = None,
    stray_elements: Sequence[str] = (),
    channels: tuple[int, int] | None = None,
    fixed: Mapping[str, Any] | None = None,
    vacancy_transfer: bool = True,
    units: str | None = None,
) -> Calibration:
    """Fit the energy axis and the width law on a summed spectrum (Poisson likelihood).

    Parameters
    ----------
    axis
        The recorded energy axis of ``spectrum`` (:class:`EnergyAxis`, mapping, object or
        ``(offset, scale, size)``; keV unless ``units`` says eV).
    spectrum
        Summed counts, shape (axis.size,).
    beam_energy
        Beam energy (keV, or ``"200 keV"``).
    elements, stray_elements
        Specimen and stray elements, as for :func:`build_G`: their lines are the peaks fitted.
    detector
        The recorded detector (efficiency and width law); default ``Detector()``.
    specimen
        :class:`Specimen` (default none): with a thickness, the continuum columns carry the
        thin-film absorption of the composition that the first solve's peak amplitudes suggest.
    channels
        ``[first, stop)`` channels to fit (default: centres above 0.25 keV and below the beam
        energy).
    fixed
        Known values, held fixed: ``"offset_shift_eV"`` (eV), ``"gain"``, and for the widths one
        of ``"fwhm_quadratic"`` ((c0, c1, c2), eV units), ``"fwhm_linear"`` ((a, b), keV units,
        FWHM = a·E + b), ``"resolution_mnka"`` (eV, Fiori law). Everything else is fitted.
    vacancy_transfer
        As for :func:`build_G`.
    units
        Units of ``axis`` if it does not say.

    Returns
    -------
    Calibration
        The fitted values and their 1σ uncertainties; ``applied`` False (recorded values kept)
        when the spectrum cannot calibrate them (see the module notes).
    """
    with one_blas_thread():
        return _calibrate(axis, spectrum, beam_energy, elements, detector, specimen,
                          stray_elements, channels, fixed, vacancy_transfer, units)  # fmt: skip


def _calibrate(axis, spectrum, beam_energy, elements, detector, specimen, stray_elements,
               channels, fixed, vacancy_transfer, units) -> Calibration:  # fmt: skip
    t_start = time.perf_counter()
    ax = EnergyAxis.from_any(axis, units)
    y_full = np.asarray(spectrum, dtype=np.float64).reshape(-1)
    if y_full.size != ax.size:
        raise ValueError(f"spectrum has {y_full.size} channels, the axis {ax.size}")
    if np.any(~np.isfinite(y_full)) or np.any(y_full < 0):
        raise ValueError("spectrum must hold finite counts >= 0")
    e0 = float(to_float(beam_energy, "keV", "beam_energy"))
    det = Detector() if detector is None else detector
    fixed = dict(fixed or {})
    unknown = set(fixed) - {
        "offset_shift_eV", "gain", "fwhm_quadratic", "fwhm_linear", "resolution_mnka"
    }  # fmt: skip
    if unknown:
        raise ValueError(f"unknown calibration value(s): {', '.join(sorted(unknown))}")
    if channels is None:
        e = ax.energies
        keep = np.nonzero((e > _LOW_CUT_KEV) & (e < e0))[0]
        if keep.size < 2:
            raise ValueError("no channels to calibrate on between 0.25 keV and the beam energy")
        c0, c1 = int(keep[0]), int(keep[-1]) + 1
    else:
        c0, c1 = (int(c) for c in channels)
    file_law = _law_of(det)
    file_fwhm = {k: float(_fwhm_eV(file_law, v)) for k, v in REPORT_LINES.items()}

    # the recorded values, and the known ones
    law0 = file_law
    width_fixed = False
    for key in ("fwhm_quadratic", "fwhm_linear", "resolution_mnka"):
        if key in fixed:
            kw: dict[str, Any] = {"fwhm_model": {"fwhm_quadratic": "quadratic",
                                                 "fwhm_linear": "linear",
                                                 "resolution_mnka": "fiori"}[key]}  # fmt: skip
            kw[key] = fixed[key]
            law0 = _law_of(Detector(**kw))
            width_fixed = True
    gain0 = float(fixed.get("gain", 1.0))
    shift0 = float(fixed.get("offset_shift_eV", 0.0))
    w_lo0, w_hi0 = (float(_fwhm_eV(law0, E)) for E in (_E_LO, _E_HI))
    q0 = float(max(law0[2], 0.0))

    def result(applied: bool, message: str, **kw: Any) -> Calibration:
        base = {
            "offset_shift_eV": 0.0, "gain": 1.0, "fwhm_quadratic": tuple(file_law),
            "fwhm_eV": dict(file_fwhm), "file_fwhm_eV": file_fwhm, "applied": applied,
            "message": message, "seconds": time.perf_counter() - t_start,
        }  # fmt: skip
        base.update(kw)
        return Calibration(**base)

    if c1 - c0 < 20:
        return result(False, f"only {c1 - c0} channels to calibrate on")
    y = y_full[c0:c1]
    counts = float(y.sum())
    fit_axis = EnergyAxis(ax.offset + c0 * ax.scale, ax.scale, c1 - c0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            lines_model = build_G(
                fit_axis, e0, list(elements), detector=det, stray_elements=list(stray_elements),
                continuum=False, vacancy_transfer=vacancy_transfer,
            )  # fmt: skip
            lines = list(lines_model.lines)
            line_columns = [int(c) for c in lines_model.line_columns]
        except ValueError:
            lines, line_columns = [], []
    # pivot: the middle of the peaks' energies, to decorrelate the shift from the gain
    if lines:
        le = np.array([x.energy_keV for x in lines])
        pivot_e = float(np.clip(np.median(le), fit_axis.energies[0], fit_axis.energies[-1]))
    else:
        pivot_e = float(fit_axis.energies[fit_axis.size // 2])
    pivot = (pivot_e - ax.offset) / ax.scale
    prob = _Problem(ax, c0, y, e0, lines, line_columns, det, pivot)
    shift_p0 = shift0 + (gain0 - 1.0) * pivot * ax.scale * 1000.0  # shift at the pivot
    theta0 = np.array([shift_p0, gain0, w_lo0, w_hi0, q0])
    _, a0, A0, norm0 = prob.solve(theta0, with_norm=True)
    if specimen is not None and specimen.absorbs:
        prob.absorb_continuum(a0, norm0, list(elements), specimen)
        _, a0, A0 = prob.solve(theta0, a0)
    prob.theta_file = np.array(
        [0.0, 1.0, *(float(_fwhm_eV(file_law, E)) for E in (_E_LO, _E_HI)), max(file_law[2], 0.0)]
    )
    dev_file, a_file, A_file = prob.solve(prob.theta_file)

    # usable peaks: enough counts above the continuum, merged when closer than 1.5 FWHM
    ng = prob.n_groups
    peak_counts = a0[:ng][prob.family_group] * prob.family_share  # counts per line family
    cont = A0[:, ng:] @ a0[ng:]
    centres = prob.energies_of(theta0[0], theta0[1], prob.centre_index)
    usable = []
    for j in range(len(prob.families)):
        fw = float(_fwhm_eV(law0, prob.family_E[j])) / 1000.0
        win = np.abs(centres - prob.family_E[j]) <= fw
        bg = float(cont[win].sum())
        z = peak_counts[j] / np.sqrt(peak_counts[j] + bg) if peak_counts[j] > 0 else 0.0
        if peak_counts[j] >= _MIN_PEAK_COUNTS and z >= _MIN_PEAK_Z:
            usable.append(prob.family_E[j])
    usable.sort()
    clusters: list[float] = []
    for E in usable:
        if clusters and E - clusters[-1] < 1.5 * float(_fwhm_eV(law0, E)) / 1000.0:
            continue
        clusters.append(E)
    n_peaks = len(clusters)
    peak_total = float(peak_counts.sum())
    mu_file = A_file @ a_file
    curves = {"channels": (c0, c1), "data": y, "model_file": mu_file, "model": mu_file}
    common = {"counts": counts, "n_peaks": n_peaks, "deviance_file": dev_file,
              "deviance": dev_file, "curves": curves}  # fmt: skip
    if "offset_shift_eV" in fixed and "gain" in fixed and width_fixed:
        return _finish(prob, theta0, a0, [], (), file_fwhm, file_law, common, t_start,
                       message="known values used")  # fmt: skip

    def fallback(reason: str) -> Calibration:
        if fixed:  # the known values, nothing fitted
            return _finish(prob, theta0, a0, [], (), file_fwhm, file_law, common, t_start,
                           message=f"known values used; {reason}")  # fmt: skip
        return result(False, f"{reason}: recorded values kept", **common)

    if peak_total < _MIN_TOTAL_PEAK_COUNTS:
        return fallback(f"too few counts in the peaks ({peak_total:.0f})")
    if n_peaks < 3:
        return fallback(f"too few separated peaks with enough counts ({n_peaks}, needs 3)")

    # free parameters
    span = clusters[-1] - clusters[0]
    free = []
    if "offset_shift_eV" not in fixed:
        free.append(0)
    if "gain" not in fixed:
        free.append(1)
    if not width_fixed:
        free += [2, 3]
        if n_peaks >= 4 and span >= 3.0:
            free.append(4)
    names = {0: "offset", 1: "gain", 2: "width", 4: "curvature"}
    fitted = tuple(dict.fromkeys(names[i] for i in free if i in names))

    lo = np.array([shift_p0 - _SHIFT_RANGE_EV, 1 - _GAIN_RANGE, _WIDTH_RANGE[0] * w_lo0,
                   _WIDTH_RANGE[0] * w_hi0, 0.0])  # fmt: skip
    hi = np.array([shift_p0 + _SHIFT_RANGE_EV, 1 + _GAIN_RANGE, _WIDTH_RANGE[1] * w_lo0,
                   _WIDTH_RANGE[1] * w_hi0, _C2_MAX])  # fmt: skip
    step = np.array([5.0, 1e-3, 5.0, 5.0, 20.0])  # scale of each parameter for the search

    # 1. scan of the shift at the recorded widths (the likelihood has a local optimum per
    #    line-to-line confusion further than about one FWHM)
    theta = theta0.copy()

    scan_step = 0.25 * min(w_lo0, 40.0)

    def scan(theta: NDArray, around: float | None = None) -> tuple[NDArray, NDArray]:
        """Best shift on a grid over the search range (or ± 3 steps ``around`` a shift)."""
        best_d, best_a = prob.solve(theta)[:2]
        best_t = theta.copy()
        if 0 in free:
            a = None
            if around is None:
                grid = shift_p0 + np.arange(-_SHIFT_RANGE_EV, _SHIFT_RANGE_EV + 1e-9, scan_step)
            else:
                grid = around + scan_step * np.arange(-3, 4)
                grid = grid[np.abs(grid - shift_p0) <= _SHIFT_RANGE_EV]
            for s in grid:
                t = theta0.copy()
                t[0] = s
                d, a, _ = prob.solve(t, a)
                if d < best_d:
                    best_d, best_t, best_a = d, t, a
        return best_t, best_a

    theta, a_best = scan(theta)
    #    channels that no modelled line explains (a missing element, sum or escape peaks) are
    #    left out, and the scan repeated, until none is found
    for _ in range(4):
        _, a_cur, A_cur = prob.solve(theta, a_best)
        bad = prob.unexplained(theta, a_cur, A_cur)
        if not np.any(bad & prob.mask):
            break
        prob.mask = prob.mask & ~bad
        theta, a_best = scan(theta, around=float(theta[0]))

    # 2. bounded Nelder-Mead on the profile deviance
    free_idx = np.array(free)
    state = {"a": a_best}

    def objective(x: NDArray) -> float:
        t = theta.copy()
        t[free_idx] = x * step[free_idx]
        d, a, _ = prob.solve(t, state["a"])
        state["a"] = a
        return d

    bounds = list(zip(lo[free_idx] / step[free_idx], hi[free_idx] / step[free_idx], strict=True))

    def search(theta: NDArray, size: float, xatol: float = 1e-2) -> NDArray:
        x0 = theta[free_idx] / step[free_idx]
        if 4 in free:  # start c2 inside its range: a simplex on the bound c2 = 0 collapses
            j = free.index(4)
            x0[j] = max(x0[j], 2.0)
        simplex = np.vstack([x0] + [x0 + size * np.eye(len(free))[i] for i in range(len(free))])
        simplex = np.clip(simplex, [b[0] for b in bounds], [b[1] for b in bounds])
        res = minimize(objective, x0, method="Nelder-Mead", bounds=bounds,
                       options={"initial_simplex": simplex, "xatol": xatol, "fatol": 1e-3,
                                "maxfev": 400 * len(free)})  # fmt: skip
        out = theta.copy()
        out[free_idx] = res.x * step[free_idx]
        return out

    theta = search(theta, 0.5, xatol=0.1)  # refined in step 4
    # 3. the same check of what no modelled line explains, after the search
    for _ in range(3):
        _, a_cur, A_cur = prob.solve(theta, state["a"])
        bad = prob.unexplained(theta, a_cur, A_cur)
        if not np.any(bad & prob.mask):
            break
        prob.mask = prob.mask & ~bad
        state["a"] = None
        _, state["a"], _ = prob.solve(theta)
        theta = search(theta, 0.3, xatol=0.1)
    # 4. refine with one amplitude per line family: tabulated ratios between an element's K, L
    #    and M lines (and their absorption) no longer pull on positions and widths. Done last,
    #    once lines missing from the model are left out: free family amplitudes could take them.
    prob.regroup("family")
    state["a"] = None
    _, state["a"], _ = prob.solve(theta)
    theta = search(theta, 0.2)
    n_masked = int((~prob.mask).sum())
    if n_masked:
        common = {**common, "masked_channels": n_masked}
    at_edge = [
        names.get(int(i), "width")
        for i in free_idx
        if i != 4 and (theta[i] <= lo[i] + 1e-6 * step[i] or theta[i] >= hi[i] - 1e-6 * step[i])
    ]
    _, a_fit, _ = prob.solve(theta, state["a"])
    if at_edge:
        return fallback(f"the fit ran to the edge of its search range ({', '.join(at_edge)})")
    return _finish(prob, theta, a_fit, free, fitted, file_fwhm, file_law, common, t_start)


def _gauss_centre(x: NDArray, y: NDArray) -> tuple[float, float] | None:
    """Centre and area of a Gaussian on a linear background fitted to (x, y); None if it fails."""

    def f(x, a, c, w, b0, b1):
        return a * np.exp(-0.5 * ((x - c) / w) ** 2) + b0 + b1 * (x - c)

    c0 = float(x[np.argmax(y)])
    try:
        p, _ = curve_fit(f, x, y, p0=[float(y.max() - y.min()), c0, 0.3 * float(np.ptp(x)),
                                      float(y.min()), 0.0], maxfev=2000)  # fmt: skip
    except (RuntimeError, ValueError):
        return None
    if not (x[0] < p[1] < x[-1]) or p[0] <= 0:
        return None
    return float(p[1]), float(p[0] * abs(p[2]) * np.sqrt(2 * np.pi) / (x[1] - x[0]))


def _peak_offsets(prob, theta, An: NDArray, a: NDArray, coef) -> dict[str, float]:
    """Data − model centre (eV) of each strong line family that dominates (≥ 80 % of the model
    counts) its window, on the recorded axis."""
    out: dict[str, float] = {}
    mu = An @ a
    by_family = prob.n_groups == len(prob.families)
    rec = prob.axis.offset + prob.axis.scale * prob.centre_index  # recorded channel centres
    true = prob.energies_of(theta[0], theta[1], prob.centre_index)
    for (el, fam), E in zip(prob.families, prob.family_E, strict=True):
        if not true[0] < E < true[-1]:
            continue
        e_rec = float(np.interp(E, true, rec))
        half = 1.2 * float(_fwhm_eV(coef, E)) / 1000.0
        win = np.nonzero((np.abs(rec - e_rec) <= half) & prob.mask)[0]
        if win.size < 7 or not np.all(np.diff(win) == 1):
            continue
        if by_family:
            j = prob.families.index((el, fam))
            if (An[win, j] * a[j]).sum() < 0.8 * mu[win].sum():
                continue  # overlapped: a ratio error would move the blend
        d = _gauss_centre(rec[win], prob.y[win])
        m = _gauss_centre(rec[win], mu[win])
        if d is None or m is None or d[1] < _PEAK_CHECK_COUNTS:
            continue
        out[f"{el} {fam}"] = 1000.0 * (d[0] - m[0])
    return out


def _finish(prob, theta, a, free, fitted, file_fwhm, file_law, common, t_start,
            message: str = "") -> Calibration:  # fmt: skip
    dev, a, An = prob.solve(theta, a)
    coef = _quadratic_from_anchors(theta[2], theta[3], theta[4])
    shift0 = prob.offset_shift(theta[0], theta[1])
    fwhm = {k: float(_fwhm_eV(coef, v)) for k, v in REPORT_LINES.items()}
    # Fisher information of (free θ, active amplitudes)
    m = prob.mask
    mu = np.maximum(An[m] @ a, 1e-12)
    active = np.nonzero(a > 0)[0]
    cols = [An[m][:, active]]
    h = np.array([0.2, 2e-5, 0.2, 0.2, 2.0])
    for i in free:
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h[i]
        tm[i] -= h[i]
        Ap, Am = prob.columns(tp), prob.columns(tm)
        norm = prob.columns(theta).sum(axis=0)
        norm[norm <= 0] = 1.0
        cols.append((((Ap - Am)[m] / norm) @ a / (2 * h[i]))[:, None])
    D = np.column_stack(cols)
    n_a = active.size
    dof = max(int(m.sum()) - n_a - len(free), 1)
    inflate = max(1.0, dev / dof)
    unc: dict[str, float] = {"offset_shift_eV": 0.0, "gain": 0.0}
    unc.update({f"fwhm {k}": 0.0 for k in REPORT_LINES})
    if free:
        J = D.T @ (D / mu[:, None])
        try:
            cov_all = np.linalg.pinv(J) * inflate
        except np.linalg.LinAlgError:
            cov_all = np.full(J.shape, np.nan)
        cov = cov_all[n_a:, n_a:]
        # derived quantities: gradient of (offset shift at channel 0, gain, FWHM at lines)
        full = np.zeros((5, 5))
        full[np.ix_(free, free)] = cov
        g_off = np.array([1.0, -prob.pivot * prob.axis.scale * 1000.0, 0, 0, 0])
        unc["offset_shift_eV"] = float(np.sqrt(max(g_off @ full @ g_off, 0.0)))
        unc["gain"] = float(np.sqrt(max(full[1, 1], 0.0)))
        for k, E in REPORT_LINES.items():
            grad = np.zeros(5)
            for i in (2, 3, 4):
                tp, tm = theta.copy(), theta.copy()
                tp[i] += 0.05
                tm[i] -= 0.05
                fp = float(_fwhm_eV(_quadratic_from_anchors(*tp[2:]), E))
                fm = float(_fwhm_eV(_quadratic_from_anchors(*tm[2:]), E))
                grad[i] = (fp - fm) / 0.1
            unc[f"fwhm {k}"] = float(np.sqrt(max(grad @ full @ grad, 0.0)))
        sigma_shift_pivot = float(np.sqrt(max(full[0, 0], 0.0)))
    else:
        sigma_shift_pivot = 0.0
    common = dict(common)
    common["deviance"] = dev
    dev_f, a_f, A_f = prob.solve(prob.theta_file)  # on the same channels
    common["deviance_file"] = dev_f
    common["curves"] = {**common["curves"], "model": An @ a, "model_file": A_f @ a_f,
                        "mask": prob.mask.copy()}  # fmt: skip
    offsets = _peak_offsets(prob, theta, An, a, coef)
    notes = []
    worst = max(offsets.items(), key=lambda kv: abs(kv[1]), default=None)
    axis_fitted = 0 in free and 1 in free  # otherwise the offsets measure the known values
    if axis_fitted and worst is not None and abs(worst[1]) > _WARN_PEAK_EV:
        notes.append(
            f"the axis is not linear: after calibration the data's {worst[0]} peak sits "
            f"{worst[1]:+.1f} eV from the model's (no offset and gain place every line)"
        )
    if abs(shift0) > _WARN_SHIFT_EV:
        notes.append(f"the energy offset moved by {shift0:+.0f} eV (more than {_WARN_SHIFT_EV:g})")
    lo_keV = prob.axis.offset + prob.axis.scale * prob.c0  # the fitted channels' first energy
    for k in ("O Ka", "Mn Ka"):
        rel = fwhm[k] / file_fwhm[k] - 1.0
        # a line below the fitted channels: its width there is the law's extrapolation
        if abs(rel) > _WARN_WIDTH and REPORT_LINES[k] >= lo_keV:
            notes.append(f"the FWHM at {k} changed by {100 * rel:+.0f} % (more than 50 %)")
    base = {
        "offset_shift_eV": float(shift0), "gain": float(theta[1]), "fwhm_quadratic": coef,
        "fwhm_eV": fwhm, "file_fwhm_eV": file_fwhm, "uncertainty": unc, "fitted": fitted,
        "warnings": tuple(notes), "degrees_of_freedom": int(dof),
        "peak_offsets_eV": offsets,
    }  # fmt: skip
    too_uncertain = []
    if 0 in free and sigma_shift_pivot > _MAX_SIGMA_SHIFT_EV:
        too_uncertain.append(f"offset ± {sigma_shift_pivot:.0f} eV")
    for k in ("O Ka", "Mn Ka"):
        if 2 in free and unc[f"fwhm {k}"] > _MAX_SIGMA_WIDTH * fwhm[k]:
            too_uncertain.append(f"FWHM at {k} ± {unc[f'fwhm {k}']:.0f} eV")
    if too_uncertain:
        out = Calibration(
            **{**base, "offset_shift_eV": 0.0, "gain": 1.0, "fwhm_quadratic": tuple(file_law),
               "fwhm_eV": dict(file_fwhm)},
            applied=False,
            message=f"the spectrum leaves the calibration uncertain ({', '.join(too_uncertain)}):"
            " recorded values kept",
            seconds=time.perf_counter() - t_start,
            **{**common, "deviance": common["deviance_file"],
               "curves": {**common["curves"], "model": common["curves"]["model_file"]}},
        )  # fmt: skip
        return out
    msg = message or f"fitted {', '.join(fitted)} on {common['n_peaks']} peaks"
    return Calibration(**base, applied=True, message=msg,
                       seconds=time.perf_counter() - t_start, **common)  # fmt: skip

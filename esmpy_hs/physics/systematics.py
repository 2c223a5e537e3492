"""A stated systematic uncertainty of the compositions: the accuracy of the physics model.

The fit gives W_ek ∝ counts of element e in phase k / s_e, with s_e the counts one atom of e
gives in the detector: ionisation cross section × fluorescence yield and line weights ×
detector efficiency × absorption in the specimen, summed over the lines of e's column
(:mod:`esmpy_hs.physics.model`). If the true sensitivity is s_e (1 + δ_e), the true number of
atoms is W_e / (1 + δ_e), so for the fractions c_e = v_e / Σ_j v_j (v_e = W_e, or W_e × atomic
weight for weight fractions)

    ∂c_e / ∂δ_j = c_e (c_j − [e = j]),   i.e.  Δc = c ⊙ (c·δ − δ)           (first order)

(an error shared by every element cancels in the normalisation). A *budget* states the relative
1σ error of each ingredient; each independent source of error is one perturbation vector δ
(elements × phases: how much each element's sensitivity moves when that source moves by 1σ),
and the systematic variance of c is the sum over the sources of (Δc)². Independent sources:

* **atomic data**, independently per element and line family (K, L, M): the ionisation cross
  section and the emission per vacancy (fluorescence yield, Coster–Kronig transfers and line
  weights). The relative change of the element's sensitivity is the family's share of the
  element's counts times the stated relative error;
* **detector efficiency**, one source per layer of the efficiency model (each window layer,
  the Si dead layer, the crystal) and an unmodelled contamination layer (ice) on the window:
  a thickness error t → t + σ_t changes ln ε(E) by −(μ/ρ)(E) ρ σ_t (the crystal:
  ∂ ln[1 − e^(−μρt)]), which moves low-energy lines most; shared by all elements, so it acts
  through the differences between their energies. When the window was **not stated** (neither
  the file's metadata nor the call named one: ``Detector.window_stated`` is False), the
  default window is an assumption, and its layers' thickness errors are replaced by one source
  for the window *type*: the window is taken as uniformly distributed between the thinnest and
  the thickest of :attr:`SystematicBudget.unstated_window` (windowless and the polymer
  preset), so ln ε(E) has the 1σ (ln T_thick(E) − ln T_thin(E)) / √12 (T: the layers'
  transmission; a support grid's open fraction is the same at every energy and cancels);
* **absorption** in the specimen (with a thickness only): the mass thickness ρt (one source
  shared by all lines) and the mass attenuation coefficients (one source per element and family):
  ∂ ln A/∂ ln χ × the relative error, A = (1 − e^(−χ))/χ;
* **calibration** (see :func:`calibration_perturbations`): the detector self-calibration's own
  1σ (offset, gain, widths at O Kα and Mn Kα), propagated by refitting each fitted phase
  spectrum with the model moved by 1σ.

What it does not contain: errors in the *spectral shapes* the unmixing relies on (a width law
or an energy axis wrong by more than the calibration's 1σ, a continuum of another shape, a
missing element), the start and priors of the fit (phases never seen pure), and the counting
noise (given separately). The counting part and the spread of refits over count splits are
added in quadrature by :meth:`EDSespm.quantify_phases`.

The numbers of the default budget (:class:`SystematicBudget`) and where they come from
--------------------------------------------------------------------------------------
Relative 1σ, dimensionless (thicknesses in nm):

* ionisation cross sections, 0.11 for every shell: the cross sections are Bote & Salvat's
  distorted-wave/plane-wave Born calculation (D. Bote, F. Salvat, Phys. Rev. A 77 (2008)
  042701), whose analytical fit reproduces the calculation to about 1 % (D. Bote et al., At. Data
  Nucl. Data Tables 95 (2009) 871); measured cross sections that pass mutual-consistency checks
  deviate from the calculation by 10.9 % r.m.s. over all shells (X. Llovet, C. J. Powell,
  F. Salvat, A. Jablonski, J. Phys. Chem. Ref. Data 43 (2014) 013102, as summarised by NIST
  SRD 164). One figure is used for K, L and M shells because that review quotes one overall
  figure; the data for L and M shells are fewer.
* emission per vacancy (fluorescence yield ω, Coster–Kronig transfers, line weights):
  K shell 0.20 for Z ≤ 10, 0.05 for 11 ≤ Z ≤ 20, 0.02 above (the compilations of
  M. O. Krause, J. Phys. Chem. Ref. Data 8 (1979) 307 and J. H. Hubbell et al., J. Phys. Chem.
  Ref. Data 23 (1994) 339 assign ω_K uncertainties that fall steeply with Z, from tens of per
  cent for the lightest elements, where measurements disagree — see also the PTB determination
  of ω_K of carbon, Y. Ménesguen et al. 2022 / arXiv:2111.11786 — to a few per cent and below
  above Z ≈ 20); L shell 0.15 (J. L. Campbell, At. Data Nucl. Data Tables 85 (2003) 291
  recommends L-subshell yields and Coster–Kronig probabilities with uncertainties of 10 to
  several 10 %, the L lines depend on all of them, and databases disagree on some Coster–Kronig
  probabilities: xraylib's f23 of Cu is 0.028 against ≈ 0.45 elsewhere); M shell 0.30 (few
  measurements of M-shell yields exist; Hubbell et al. 1994 tabulate them for a handful of
  elements).
* detector efficiency: window and metal-coating layers ±25 % of their nominal thickness, Si dead
  layer ±30 nm (the range 0–100 nm of thin-window SDDs, notes of the physics model), crystal
  ±10 %, and an ice layer on the window of 0 ± 20 nm (0.92 g/cm³) that the model does not have:
  manufacturers do not state layer thicknesses to better than this and the efficiency of a
  real detector below ~1 keV is known only roughly unless measured. These figures are this
  module's judgement of typical ranges, not a measurement; pass your own budget when the
  detector is characterised. A window not stated: between windowless (the large
  multi-detector systems of current STEMs record without a window) and a 300 nm polymer +
  40 nm Al window (a common light-element window of SDDs; the presets of
  :mod:`esmpy_hs.physics.detector`); for O Kα against Si Kα that is a 1σ of about 10 %.
* absorption: ρt ±20 % (a thickness from the EELS log-ratio method is accurate to about ±20 %:
  T. Malis, S. C. Cheng, R. F. Egerton, J. Electron Microsc. Tech. 8 (1988) 193), mass
  attenuation coefficients ±10 % (tabulations such as XCOM / FFAST state a few per cent above
  ~1 keV and 10–20 % near edges and below 1 keV: C. T. Chantler, J. Phys. Chem. Ref. Data 29
  (2000) 597).

Calculated (standardless) thin-film k-factors are stated to be accurate to about 10–20 % for K
lines, worse for L and M lines and light elements (D. B. Williams, C. B. Carter, *Transmission
Electron Microscopy*, 2nd ed., Springer 2009, ch. 35); the budget above gives relative
sensitivity errors of that size (≈ 12 % for a K line above 2 keV, 25–30 % for light elements
and M lines), which is a check of its order, not a fit to it.

HyperSpy-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from esmpy_hs.physics._elements import atomic_number
from esmpy_hs.physics.attenuation import mass_attenuation
from esmpy_hs.physics.detector import WINDOW_PRESETS

__all__ = [
    "DEFAULT_BUDGET",
    "PART_NAMES",
    "SystematicBudget",
    "calibration_perturbations",
    "propagate",
    "sensitivity_perturbations",
    "systematic_errors",
]

#: the parts of the systematic uncertainty, in the order they are reported
PART_NAMES = ("atomic data", "detector efficiency", "absorption", "calibration")

_FAMILIES = ("K", "L", "M")


@dataclass(frozen=True)
class SystematicBudget:
    """Relative 1σ accuracies of the physics model (see the module docstring for the sources).

    Attributes
    ----------
    cross_section : dict
        ``{"K": r, "L": r, "M": r}``: relative 1σ of the ionisation cross sections.
    emission_K : tuple of (int, float)
        ``((Z_max, r), ...)``: relative 1σ of the K-shell emission per vacancy (fluorescence
        yield and line weights) for Z ≤ Z_max, first match; the last entry applies above.
    emission : dict
        ``{"L": r, "M": r}``: the same for the L and M families.
    window_relative : float
        Relative 1σ of each window layer's thickness.
    dead_layer_nm : float
        1σ of the Si dead layer (nm).
    crystal_relative : float
        Relative 1σ of the Si crystal thickness.
    ice_nm : float
        1σ of an ice layer (H2O, 0.92 g/cm³) on the window that the model omits (nm).
    unstated_window : tuple of str, or None
        ``(thinnest, thickest)`` window presets spanning the windows in use, for a detector
        whose window was not stated (uniform between them); None: the assumed window's layer
        thicknesses are used as if stated.
    mass_thickness : float
        Relative 1σ of the specimen's ρt (absorption; used only with a thickness).
    attenuation : float
        Relative 1σ of the mass attenuation coefficients (absorption).
    calibration : bool
        Include the detector calibration's own 1σ (refits; see
        :func:`calibration_perturbations`).
    """

    cross_section: Mapping[str, float] = field(
        default_factory=lambda: {"K": 0.11, "L": 0.11, "M": 0.11}
    )
    emission_K: tuple[tuple[int, float], ...] = ((10, 0.20), (20, 0.05), (999, 0.02))
    emission: Mapping[str, float] = field(default_factory=lambda: {"L": 0.15, "M": 0.30})
    window_relative: float = 0.25
    dead_layer_nm: float = 30.0
    crystal_relative: float = 0.10
    ice_nm: float = 20.0
    unstated_window: tuple[str, str] | None = ("windowless", "polymer")
    mass_thickness: float = 0.20
    attenuation: float = 0.10
    calibration: bool = True

    def __post_init__(self) -> None:
        values = [*self.cross_section.values(), *self.emission.values(),
                  *(r for _, r in self.emission_K), self.window_relative, self.dead_layer_nm,
                  self.crystal_relative, self.ice_nm, self.mass_thickness,
                  self.attenuation]  # fmt: skip
        if not all(np.isfinite(float(v)) and float(v) >= 0 for v in values):
            raise ValueError("every entry of a SystematicBudget must be a finite number >= 0")
        if set(self.cross_section) != set(_FAMILIES) or set(self.emission) != {"L", "M"}:
            raise ValueError("cross_section needs K, L and M; emission needs L and M")
        if not self.emission_K:
            raise ValueError("emission_K needs at least one (Z_max, r) entry")
        if self.unstated_window is not None:
            if len(self.unstated_window) != 2 or not set(self.unstated_window) <= set(
                WINDOW_PRESETS
            ):
                raise ValueError(
                    "unstated_window must be two window presets "
                    f"({sorted(WINDOW_PRESETS)}) or None, got {self.unstated_window!r}"
                )

    @classmethod
    def zero(cls) -> SystematicBudget:
        """A budget of zeros (no systematic error, no calibration refits)."""
        return cls({"K": 0.0, "L": 0.0, "M": 0.0}, ((999, 0.0),), {"L": 0.0, "M": 0.0},
                   0.0, 0.0, 0.0, 0.0, None, 0.0, 0.0, False)  # fmt: skip

    def family_error(self, element: str, family: str) -> float:
        """Relative 1σ of the atomic data of ``element``'s ``family`` lines (cross section ⊕
        emission per vacancy)."""
        if family == "K":
            z = atomic_number(element)
            emission = next((r for zmax, r in self.emission_K if z <= zmax),
                            self.emission_K[-1][1])  # fmt: skip
        else:
            emission = float(self.emission[family])
        return float(np.hypot(self.cross_section[family], emission))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for metadata)."""
        d = asdict(self)
        d["cross_section"] = dict(self.cross_section)
        d["emission"] = dict(self.emission)
        d["emission_K"] = [list(x) for x in self.emission_K]
        if self.unstated_window is not None:
            d["unstated_window"] = list(self.unstated_window)
        return d


#: the budget used when none is given
DEFAULT_BUDGET = SystematicBudget()

_ICE_DENSITY = 0.92
_SI_DENSITY = 2.33


def propagate(fractions: NDArray, delta: NDArray) -> NDArray[np.float64]:
    """First-order change of normalised fractions when the sensitivities change by ``delta``.

    Parameters
    ----------
    fractions
        (e, k) fractions c (each column sums to 1; atomic or weight).
    delta
        (e, k) or (e,) relative changes δ of the elements' sensitivities.

    Returns
    -------
    numpy.ndarray
        (e, k) Δc = c ⊙ (Σ_j c_j δ_j − δ) (same units as ``fractions``).
    """
    c = np.asarray(fractions, dtype=np.float64)
    d = np.asarray(delta, dtype=np.float64)
    if d.ndim == 1:
        d = np.broadcast_to(d[:, None], c.shape)
    if d.shape != c.shape:
        raise ValueError(f"delta has shape {d.shape}, fractions {c.shape}")
    return c * ((c * d).sum(axis=0, keepdims=True) - d)


def _line_shares(model, W: NDArray, family: str) -> tuple[list[str], NDArray, NDArray, list]:
    """Per quantified element, its lines and each line's share of the element's counts.

    Returns ``(elements, shares (L, e, k), chi (L, k) or None, lines)``: ``shares[l, i, k]`` is
    line l's share of the counts of element i in phase k (0 for lines of other elements), χ the
    absorption exponent of each line in each phase.
    """
    resp = model._response
    element_rows = model.element_rows
    partners = model._split_partner
    elements = list(element_rows)
    k = W.shape[1]
    L = len(resp.line_base)
    on_axis = resp.peaks.sum(axis=0)  # (L,) fraction of each line's peak on the fitted axis
    chi = None
    a_lines = np.ones((k, L))
    if resp.path_factor is not None:
        rows = np.nonzero(model.simplex_mask)[0]
        atoms = np.clip(W[rows], 0.0, None).T
        symbols = [str(model.column_elements[j]) for j in rows]
        weights = resp.weights_from_atoms(atoms, symbols)
        chi = (weights @ resp.mu_lines.T) * resp.path_factor  # (k, L)
        chi[:, ~resp.line_absorbed] = 0.0
        chi[~(weights.sum(axis=1) > 0)] = 0.0
        from esmpy_hs.physics.absorption import absorption_from_chi

        a_lines = absorption_from_chi(chi)
    counts = (resp.line_base * on_axis)[None, :] * a_lines  # (k, L)
    shares = np.zeros((L, len(elements), k))
    for i, el in enumerate(elements):
        pair = partners.get(el)
        if pair is None:
            cols = {element_rows[el]}
        elif family == "combined":
            cols = set(pair)
        else:
            cols = {pair[family == "low"]}
        mine = np.isin(resp.line_columns, list(cols))
        tot = counts[:, mine].sum(axis=1)  # (k,)
        share = np.where(mine[None, :], counts, 0.0) / np.where(tot > 0, tot, 1.0)[:, None]
        shares[:, i, :] = share.T
    return elements, shares, (None if chi is None else chi.T), list(model.lines)


def _dlnA_dlnchi(chi: NDArray) -> NDArray[np.float64]:
    """∂ ln A / ∂ ln χ for A = (1 − e^(−χ))/χ (→ −χ/2 for small χ)."""
    chi = np.asarray(chi, dtype=np.float64)
    small = chi < 1e-6
    safe = np.where(small, 1.0, chi)
    em = np.exp(-safe)
    val = safe * em / (-np.expm1(-safe)) - 1.0
    return np.where(small, -0.5 * chi, val)


def _window_type_sigma(presets: tuple[str, str], energies: NDArray) -> NDArray[np.float64]:
    """1σ of ln ε at ``energies`` (keV) for a window uniform between two presets' layers."""
    def log_t(name: str) -> NDArray[np.float64]:
        out = np.zeros_like(energies, dtype=np.float64)
        for layer in WINDOW_PRESETS[name]:
            out += np.log(layer.transmission(energies))
        return out

    return (log_t(presets[1]) - log_t(presets[0])) / np.sqrt(12.0)


def sensitivity_perturbations(
    model, W: NDArray, budget: SystematicBudget = DEFAULT_BUDGET, family: str | None = None
) -> dict[str, list[tuple[str, NDArray[np.float64]]]]:
    """The independent 1σ sources of sensitivity error, by part.

    Parameters
    ----------
    model
        The fit's :class:`esmpy_hs.physics.PhysicsModel`.
    W
        (columns, k) the fitted W (its element rows set each phase's absorption).
    budget
        Relative 1σ accuracies.
    family
        ``"high"``, ``"low"`` or ``"combined"`` for split elements (default: the model's).

    Returns
    -------
    dict
        ``{part: [(label, δ), ...]}`` for the parts ``"atomic data"``, ``"detector
        efficiency"``, ``"absorption"``; δ is (elements, k): the relative change of each
        quantified element's sensitivity in each phase when the source moves by +1σ. Elements
        are ``model.element_rows`` in order.
    """
    family = model.quant_family if family is None else family
    W = np.asarray(W, dtype=np.float64)
    elements, shares, chi, lines = _line_shares(model, W, family)
    L, e, k = shares.shape
    out: dict[str, list[tuple[str, NDArray[np.float64]]]] = {p: [] for p in PART_NAMES[:3]}
    fam = np.array([ln.family for ln in lines]) if L else np.zeros(0, dtype=str)
    energies = np.array([ln.energy_keV for ln in lines], dtype=np.float64)
    # atomic data: one source per element and family
    for i, el in enumerate(elements):
        for f in _FAMILIES:
            mask = fam == f
            share = shares[mask, i, :].sum(axis=0)  # (k,)
            if not np.any(share > 0):
                continue
            d = np.zeros((e, k))
            d[i] = share * budget.family_error(el, f)
            out["atomic data"].append((f"{el} {f}", d))
    # detector efficiency: one source per layer thickness, correlated over all lines
    det = model.detector
    if det.efficiency_curve is None and L:
        srcs: list[tuple[str, NDArray]] = []
        if budget.unstated_window is not None and not det.window_stated:
            srcs.append(("window (not stated)", _window_type_sigma(budget.unstated_window,
                                                                   energies)))  # fmt: skip
        else:
            for layer in det.layers:
                mu = np.asarray(mass_attenuation(layer.material, energies), dtype=np.float64)
                t_cm = layer.thickness_nm * 1e-7
                srcs.append((f"window {layer.material}",
                             -mu * layer.density * t_cm * budget.window_relative))  # fmt: skip
        mu_si = np.asarray(mass_attenuation("Si", energies), dtype=np.float64)
        srcs.append(("dead layer", -mu_si * _SI_DENSITY * budget.dead_layer_nm * 1e-7))
        x = mu_si * _SI_DENSITY * det.crystal_thickness_um * 1e-4
        srcs.append(("crystal", x * np.exp(-x) / -np.expm1(-x) * budget.crystal_relative))
        mu_ice = np.asarray(mass_attenuation("H2O", energies), dtype=np.float64)
        srcs.append(("ice on window", -mu_ice * _ICE_DENSITY * budget.ice_nm * 1e-7))
        for label, dlog in srcs:
            d = np.einsum("l,lek->ek", dlog, shares)
            if np.any(d != 0):
                out["detector efficiency"].append((label, d))
    # absorption: ρt shared by all lines; μ/ρ per element and family
    if chi is not None and L:
        slope = _dlnA_dlnchi(chi)  # (L, k)
        d = np.einsum("lk,lek->ek", slope, shares) * budget.mass_thickness
        if np.any(d != 0):
            out["absorption"].append(("mass thickness", d))
        for i, el in enumerate(elements):
            for f in _FAMILIES:
                mask = fam == f
                d = np.zeros((e, k))
                d[i] = (slope[mask] * shares[mask, i, :]).sum(axis=0) * budget.attenuation
                if np.any(d != 0):
                    out["absorption"].append((f"attenuation of {el} {f}", d))
    return out


def calibration_perturbations(
    model, W: NDArray, calibration: Mapping[str, Any] | None
) -> list[tuple[str, NDArray, NDArray]]:
    """Compositions after moving the calibrated detector by its own 1σ and refitting.

    For each calibrated parameter (offset, gain, FWHM at O Kα, FWHM at Mn Kα) with a 1σ in
    ``calibration["uncertainty"]``, the model is rebuilt with that parameter moved by +1σ and
    each phase's fitted spectrum G_k W_k (the fit's own model of it, continuum included) is
    refitted on the moved model by Poisson non-negative least squares; the change of the
    element rows is the effect of the calibration's 1σ.

    Parameters
    ----------
    model
        The fit's model (calibrated axis and width law).
    W
        (columns, k) fitted W.
    calibration
        :meth:`esmpy_hs.physics.calibration.Calibration.to_dict` output, or None.

    Returns
    -------
    list of (label, W_moved, W_reference)
        W refitted on the moved model and on the fit's own model (the reference removes the
        refit's own small bias); compare their compositions.
    """
    from esmpy_hs.physics.calibration import (
        REPORT_LINES,
        _law_of,
        _poisson_nnls,
        _quadratic_from_anchors,
    )
    from esmpy_hs.physics.detector import Detector
    from esmpy_hs.physics.model import PhysicsModel

    if not calibration or not calibration.get("applied", False):
        return []
    unc = dict(calibration.get("uncertainty", {}))
    W = np.asarray(W, dtype=np.float64)
    G3 = model.G_for_phases(W)
    base = model.to_dict()
    c0, c1, c2 = _law_of(model.detector)
    w_lo = float(np.sqrt(c0 + c1 * REPORT_LINES["O Ka"] + c2 * REPORT_LINES["O Ka"] ** 2))
    w_hi = float(np.sqrt(c0 + c1 * REPORT_LINES["Mn Ka"] + c2 * REPORT_LINES["Mn Ka"] ** 2))
    moves = []
    if unc.get("offset_shift_eV", 0.0) > 0:
        d = dict(base, axis=dict(base["axis"]))
        d["axis"]["offset"] = float(d["axis"]["offset"]) + unc["offset_shift_eV"] / 1000.0
        moves.append(("offset", d))
    if unc.get("gain", 0.0) > 0:
        d = dict(base, axis=dict(base["axis"]))
        gain = float(calibration.get("gain", 1.0))
        d["axis"]["scale"] = float(d["axis"]["scale"]) * (gain + unc["gain"]) / gain
        moves.append(("gain", d))
    for name, lo, hi in (("FWHM at O Ka", unc.get("fwhm O Ka", 0.0), 0.0),
                         ("FWHM at Mn Ka", 0.0, unc.get("fwhm Mn Ka", 0.0))):  # fmt: skip
        if lo > 0 or hi > 0:
            det = model.detector.to_dict()
            det["fwhm_model"] = "quadratic"
            det["fwhm_quadratic"] = list(_quadratic_from_anchors(w_lo + lo, w_hi + hi, c2))
            moves.append((name, dict(base, detector=Detector.from_dict(det).to_dict())))
    if not moves:
        return []

    def refit(G3m: NDArray) -> NDArray:
        Wm = np.empty_like(W)
        for q in range(W.shape[1]):
            y = G3[q] @ W[:, q]
            if not y.sum() > 0:
                Wm[:, q] = W[:, q]
                continue
            scale = y.sum()
            Wm[:, q] = _poisson_nnls(G3m[q], y / scale, W[:, q] / scale) * scale
        return Wm

    W_ref = refit(G3)
    out = []
    for label, d in moves:
        moved = PhysicsModel.from_dict(d)
        out.append((label, refit(moved.G_for_phases(W)), W_ref))
    return out


def systematic_errors(
    model,
    W: NDArray,
    atomic_fractions: NDArray,
    weight_fractions: NDArray,
    budget: SystematicBudget = DEFAULT_BUDGET,
    *,
    family: str | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """1σ systematic errors of the compositions, by part.

    Parameters
    ----------
    model, W
        The fit's model and W (columns × k).
    atomic_fractions, weight_fractions
        (elements, k) the quantified fractions (rows in ``model.element_rows`` order).
    budget
        Relative 1σ accuracies (:class:`SystematicBudget`).
    family
        Split elements' family (default: the model's).
    calibration
        The fit's calibration (dict) for the calibration part; None: no calibration part.

    Returns
    -------
    dict
        ``{part: (atomic σ, weight σ)}`` (fractions, same shape as the inputs) for every part
        of :data:`PART_NAMES`, and ``"total"``: the parts added in quadrature. A part that does
        not apply (no thickness, no calibration) is zeros.
    """
    family = model.quant_family if family is None else family
    at = np.nan_to_num(np.asarray(atomic_fractions, dtype=np.float64))
    wt = np.nan_to_num(np.asarray(weight_fractions, dtype=np.float64))
    zeros = np.zeros_like(at)
    out: dict[str, tuple[NDArray, NDArray]] = {}
    for part, sources in sensitivity_perturbations(model, W, budget, family).items():
        va, vw = zeros.copy(), zeros.copy()
        for _, d in sources:
            va += propagate(at, d) ** 2
            vw += propagate(wt, d) ** 2
        out[part] = (np.sqrt(va), np.sqrt(vw))
    va, vw = zeros.copy(), zeros.copy()
    if budget.calibration and calibration:
        G3 = model.G_for_phases(np.asarray(W, dtype=np.float64))
        for _, Wm, Wr in calibration_perturbations(model, W, calibration):
            qm = model.composition(Wm, family=family, G=G3)
            qr = model.composition(Wr, family=family, G=G3)
            va += (qm.atomic_fractions - qr.atomic_fractions) ** 2
            vw += (qm.weight_fractions - qr.weight_fractions) ** 2
    out["calibration"] = (np.sqrt(va), np.sqrt(vw))
    out["total"] = (
        np.sqrt(sum(out[p][0] ** 2 for p in PART_NAMES)),
        np.sqrt(sum(out[p][1] ** 2 for p in PART_NAMES)),
    )
    return out

"""Figures for people: where each phase is, what its spectrum looks like, what it is made of.

:func:`plot_phases` draws one row per phase of a decomposition:

1. the **abundance map** (with a colour bar, in the navigation axes' units when they have any);
2. the **spectrum**: the mean data spectrum over the pixels where the phase dominates, the model
   over the same pixels, the phase's own part of it (the column of G·W, scaled by the mean
   abundance there) and, after ``smart_nmf``, the contribution of every element
   (G[:, columns of the element]·W[columns, k]) labelled with the element and its main line,
   e.g. "Fe Kα";
3. the **composition** (at.% ± 1σ) from :meth:`EDSespm.quantify_phases`.

Only matplotlib is used (no HyperSpy plotting, no GUI): it works with the Agg backend, in
scripts, notebooks and on servers. ``s.plot_phases(...)`` calls :func:`plot_phases`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esmpy_hs._learning_results import as_numpy, decomposition_arrays

__all__ = ["line_label", "plot_element_maps", "plot_phases"]

_GREEK = {"a": "α", "b": "β", "g": "γ", "z": "ζ"}
_CONTINUUM_COLOR = "0.55"
_DATA_COLOR = "0.78"


def line_label(element: str, name: str) -> str:
    """Human label of an X-ray line: ``line_label("Fe", "Ka1")`` → ``"Fe Kα"``.

    Siegbahn names lose their index (``Ka1``/``Ka2`` → ``Kα``, ``Lb1`` → ``Lβ``, ``Ma1`` →
    ``Mα``, ``Mz1`` → ``Mζ``); other names (``Ll``, IUPAC ``M3M5``) are kept as they are.

    Parameters
    ----------
    element : str
        Element symbol.
    name : str
        Line name, Siegbahn (HyperSpy spelling) or IUPAC.

    Returns
    -------
    str
    """
    m = re.fullmatch(r"([KLMN])([abgz])\d*", name)
    if m:
        name = m.group(1) + _GREEK[m.group(2)]
    return f"{element} {name}".strip()


# ---------------------------------------------------------------------------------------------
# what the figure needs, read from the signal
# ---------------------------------------------------------------------------------------------


def _decomposition(signal) -> tuple[np.ndarray, np.ndarray]:
    factors, loadings = decomposition_arrays(signal)
    if factors.ndim != 2 or loadings.ndim != 2 or factors.shape[1] != loadings.shape[1]:
        raise ValueError(
            f"unexpected decomposition results: factors {factors.shape}, loadings {loadings.shape}"
        )
    return factors, loadings


def _smart_nmf(signal) -> dict[str, Any] | None:
    """The physics model, W and fitted channels of the last smart_nmf fit (None otherwise)."""
    from esmpy_hs.signals._record import read_record

    record = read_record(signal, current=True)
    if record is None:
        return None
    model = record.physics_model()
    return {
        "model": model,
        "W": record.W,
        "G3": record.phase_G(model),  # (k, n, m); the absorption-free G repeated without thickness
        "channels": record.channels,
        "names": record.phase_names,
    }


def _calibration_line(signal) -> str:
    """The detector calibration of the stored fit, one line ("" when none was run)."""
    from esmpy_hs.physics.calibration import Calibration
    from esmpy_hs.signals._record import read_record

    record = read_record(signal)
    if record is None or record.calibration is None:
        return ""
    return Calibration.from_dict(record.calibration).summary()


def _quantification(signal):
    quantify = getattr(signal, "quantify_phases", None)
    if quantify is None:
        return None
    try:
        return quantify()
    except ValueError:
        return None


def _family_peaks(model, column: int, contribution: np.ndarray) -> list[tuple[str, float, float]]:
    """(label, energy keV, height) of the strongest line of each line family of ``column``.

    The height is the contribution's maximum within ±2 channels of the line.
    """
    energies = model.energies
    best: dict[str, Any] = {}
    for line, col in zip(model.lines, np.asarray(model.line_columns), strict=True):
        if int(col) != column or not energies[0] <= line.energy_keV <= energies[-1]:
            continue
        fam = line.family
        if fam not in best or line.cross_section > best[fam].cross_section:
            best[fam] = line
    peaks = []
    scale = energies[1] - energies[0] if energies.size > 1 else 1.0
    for line in best.values():
        i = int(np.clip(round((line.energy_keV - energies[0]) / scale), 0, energies.size - 1))
        lo, hi = max(i - 2, 0), min(i + 3, energies.size)
        peaks.append(
            (line_label(line.element, line.name), line.energy_keV, float(contribution[lo:hi].max()))
        )
    peaks.sort(key=lambda p: -p[2])
    return peaks


def _contributions(info: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """Per-element (and continuum) parts of phase ``k``'s spectrum on the fitted channels."""
    model, W, G = info["model"], info["W"], info["G3"][k]
    out: list[dict[str, Any]] = []
    elements: dict[str, list[int]] = {}
    continuum: list[int] = []
    for j, (kind, el) in enumerate(zip(model.kinds, model.column_elements, strict=True)):
        if kind == "continuum" or el is None:
            continuum.append(j)
        else:
            elements.setdefault(str(el), []).append(j)
    for el, cols in elements.items():
        spec = G[:, cols] @ W[cols, k]
        peaks: list[tuple[str, float, float]] = []
        for j in cols:
            peaks.extend(_family_peaks(model, j, G[:, j] * W[j, k]))
        peaks.sort(key=lambda p: -p[2])
        stray = all(model.kinds[j] == "stray" for j in cols)
        label = peaks[0][0] if peaks else el
        out.append(
            {
                "element": el,
                "label": label + (" (stray)" if stray else ""),
                "spectrum": spec,
                "peaks": peaks,
                "total": float(spec.sum()),
            }
        )
    if continuum:
        out.append(
            {
                "element": None,
                "label": "continuum",
                "total": 0.0,
                "peaks": [],
                "spectrum": G[:, continuum] @ W[continuum, k],
            }
        )
    return out


def _navigation(signal) -> tuple[tuple[int, ...], list[Any]]:
    am = signal.axes_manager
    shape = tuple(int(n) for n in am.navigation_shape[::-1])  # row-major (rows, cols)
    return shape, list(am.navigation_axes)


def _region_mean(signal, mask: np.ndarray) -> np.ndarray:
    data = signal.data
    n_ch = data.shape[-1]
    flat = data.reshape(-1, n_ch) if data.ndim > 1 else data.reshape(1, n_ch)
    return as_numpy(flat[mask].mean(axis=0)).astype(np.float64)


def _dominant_masks(loadings: np.ndarray) -> list[np.ndarray]:
    """For each phase, the pixels where it has the largest abundance (at least the top 2 %)."""
    winner = np.argmax(loadings, axis=1)
    masks = []
    for k in range(loadings.shape[1]):
        mask = winner == k
        if mask.sum() < max(1, loadings.shape[0] // 50):
            top = max(1, loadings.shape[0] // 50)
            mask = np.zeros(loadings.shape[0], dtype=bool)
            mask[np.argsort(loadings[:, k])[-top:]] = True
        masks.append(mask)
    return masks


# ---------------------------------------------------------------------------------------------
# panels
# ---------------------------------------------------------------------------------------------


def _plot_map(fig, ax, values: np.ndarray, shape, axes, cmap: str) -> None:
    if len(shape) == 2:
        rows, cols = shape
        img = values.reshape(rows, cols)
        extent = None
        x_ax, y_ax = axes[0], axes[1]
        units = {str(getattr(a, "units", "") or "") for a in (x_ax, y_ax)}
        units.discard("<undefined>")
        unit = units.pop() if len(units) == 1 else ""
        if unit:
            x0, dx = float(x_ax.offset), float(x_ax.scale)
            y0, dy = float(y_ax.offset), float(y_ax.scale)
            extent = (x0 - dx / 2, x0 + (cols - 0.5) * dx, y0 + (rows - 0.5) * dy, y0 - dy / 2)
            ax.set_xlabel(unit)
            ax.set_ylabel(unit)
        else:
            ax.set_xlabel("x (pixels)")
            ax.set_ylabel("y (pixels)")
        im = ax.imshow(img, cmap=cmap, vmin=0.0, extent=extent, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.85, label="abundance")
    elif len(shape) == 1:
        x = axes[0].axis if axes else np.arange(values.size)
        ax.plot(x, values, color="C0")
        ax.set_ylim(bottom=0)
        unit = str(getattr(axes[0], "units", "") or "") if axes else ""
        ax.set_xlabel(unit if unit and unit != "<undefined>" else "position (pixels)")
        ax.set_ylabel("abundance")
    else:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"abundance {values.mean():.3g}\n(no map: {len(shape)}-D navigation)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )


def _local_max(x: np.ndarray, y: np.ndarray, at: float, half_width: float) -> float:
    sel = np.abs(x - at) <= half_width
    return float(y[sel].max()) if sel.any() else 0.0


def _plot_spectrum(
    ax,
    *,
    energies,
    data_mean,
    data_energies,
    model_mean,
    phase_part,
    parts,
    log,
    n_labels,
    x_range,
    name,
):
    sel = (data_energies >= x_range[0]) & (data_energies <= x_range[1])
    ax.fill_between(
        data_energies[sel],
        data_mean[sel],
        step="mid",
        color=_DATA_COLOR,
        lw=0,
        label="data (mean where dominant)",
    )
    ax.plot(energies, model_mean, color="k", lw=0.8, label="model (all phases)")
    ax.plot(energies, phase_part, color="C3", lw=1.4, label=f"{name} (G·W)")
    ranked = sorted((p for p in parts if p["element"] is not None), key=lambda p: -p["total"])
    phase_total = sum(p["total"] for p in ranked) or 1.0
    annotated: list[tuple[float, float, str]] = []
    for i, part in enumerate(ranked):
        color = f"C{(i % 9) + (i % 9 >= 3)}"  # skip C3, kept for the phase total
        major = i < 8 and part["total"] >= 0.005 * phase_total
        ax.plot(
            energies,
            part["spectrum"],
            color=color,
            lw=0.9 if major else 0.6,
            label=part["label"] if major else "_nolegend_",
        )
        annotated.extend((height, energy, label) for label, energy, height in part["peaks"])
    for part in parts:
        if part["element"] is None:
            ax.plot(
                energies,
                part["spectrum"],
                color=_CONTINUUM_COLOR,
                lw=0.8,
                ls="--",
                label="continuum",
            )
    # label the strongest line families of this phase inside the window, above the visible
    # peak (data or model), skipping labels that would sit on top of each other
    visible = sel & (data_energies >= energies[0]) & (data_energies <= energies[-1])
    top = max((h for h, e, _ in annotated if x_range[0] <= e <= x_range[1]), default=0.0)
    width = x_range[1] - x_range[0]
    placed: list[float] = []
    label_pos = []
    for height, energy, label in sorted(annotated, reverse=True):
        if len(placed) >= n_labels or height <= 0 or not x_range[0] <= energy <= x_range[1]:
            continue
        if height < (1e-3 if log else 0.03) * top:
            continue
        if any(abs(energy - e) < 0.025 * width for e in placed):
            continue
        if min(energy - x_range[0], x_range[1] - energy) < 0.01 * width:
            continue  # a label on the frame would be cut
        placed.append(energy)
        y = max(
            _local_max(energies, model_mean, energy, 0.03),
            _local_max(data_energies[visible], data_mean[visible], energy, 0.03),
        )
        label_pos.append((energy, y, label))
    y_top = max(float(model_mean.max()), float(data_mean[visible].max()) if visible.any() else 0)
    for energy, y, label in label_pos:
        ax.annotate(
            label,
            (energy, y),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            rotation=90,
            color="0.2",
        )
    ax.set_xlim(*x_range)
    if log:
        ax.set_yscale("log")
        positive = model_mean[model_mean > 0]
        bottom = max(positive.min(), positive.max() * 1e-4) if positive.size else 1e-6
        ax.set_ylim(bottom, max(y_top, bottom * 10) * 8.0)
    else:
        ax.set_ylim(0.0, max(y_top, 1e-12) * 1.4)  # room for the labels
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("counts / channel / pixel")
    ax.legend(fontsize=7, ncol=2, loc="upper right", frameon=False)


def _composition_text(q, k: int, max_elements: int, stray: Sequence[str]) -> str:
    if q is None:
        return "composition:\nneeds a smart_nmf fit\n(s.quantify_phases())"
    name = q.phase_names[k]
    if name in q.undetermined:
        # a traded phase's figures of a pure pixel are in the table; the panel keeps the shares
        why = getattr(q, "traded", {}).get(name) or q.undetermined[name]
        return "composition:\nnot determined\n" + "\n".join(textwrap.wrap(why, 28))
    at, err = q.atomic_percent[name], q.atomic_percent_error[name]
    missing = getattr(q, "not_detected", {}).get(name)
    at = {el: v for el, v in at.items() if not missing or el not in missing}
    order = sorted(at, key=lambda e: -at[e])
    shown = [el for el in order if at[el] >= 0.05][:max_elements]
    lines = ["at.%  (± 1σ)"]
    for el in shown:
        lines.append(f"{el:<3}{at[el]:6.2f} ± {err[el]:.2f}")
    more = [el for el in order if el not in shown and at[el] >= 0.05]
    small = [el for el in order if at[el] < 0.05]
    if more:
        lines.append(f"also {', '.join(more)}")
    if small:
        lines.append(f"< 0.05: {', '.join(small)}")
    if stray:
        lines.append(f"stray: {', '.join(stray)}")
    if missing:
        lines.append(f"not detected: {', '.join(missing)}")
    if name in q.never_pure:
        lines.append(f"never pure (≤ {100 * q.never_pure[name]:.0f} % of a pixel):")
        lines.append("set by the priors")
    return "\n".join(lines)


def _main_elements(q, k: int, n: int = 3) -> str:
    """``"\n(O, Ca, Si)"``: the most abundant elements of phase ``k`` (empty without q)."""
    if q is None:
        return ""
    if q.phase_names[k] in q.undetermined:
        return "\n(not determined)"
    at = q.atomic_percent[q.phase_names[k]]
    top = [el for el in sorted(at, key=lambda e: -at[e]) if at[el] >= 1.0][:n]
    return f"\nmostly {', '.join(top)}" if top else ""


def _x_range(energies, parts_by_phase, energy_range, beam_energy) -> tuple[float, float]:
    if energy_range is not None:
        lo, hi = (float(v) for v in energy_range)
        return lo, hi
    # up to the last clearly visible line (≥ 2 % of its phase's strongest line) plus a margin
    last = 0.0
    for parts in parts_by_phase:
        peaks = [p for part in parts for p in part["peaks"]]
        top = max((h for _, _, h in peaks), default=0.0)
        for _, energy, height in peaks:
            if height >= 0.02 * top:
                last = max(last, energy)
    hi = float(energies[-1]) if last == 0.0 else min(float(energies[-1]), last + 1.0)
    if beam_energy is not None:
        hi = min(hi, beam_energy)
    return float(energies[0]), hi


def plot_phases(
    signal,
    *,
    phase_names: Sequence[str] | None = None,
    log: bool = False,
    energy_range: tuple[float, float] | None = None,
    n_labels: int = 8,
    max_elements: int = 12,
    cmap: str = "viridis",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    filename: str | Path | None = None,
    dpi: int = 150,
):
    """One figure: each phase's abundance map, spectrum and composition.

    Parameters
    ----------
    signal : EDSespm
        A signal after ``s.decomposition(...)``. After ``algorithm="smart_nmf"`` the spectra
        show the per-element contributions and the composition column is filled; after any
        other algorithm only the maps, the data and the factors are drawn.
    phase_names : list of str, optional
        One title per phase (default: the names stored by smart_nmf, else ``"phase 0"``, …).
    log : bool
        Logarithmic intensity axis (shows trace elements; default linear).
    energy_range : (float, float), optional
        Energy window of the spectra, keV (default: the fitted range, cut 1 keV above the last
        visible line).
    n_labels : int
        At most this many line labels per spectrum.
    max_elements : int
        At most this many elements listed per phase in the composition column.
    cmap : str
        Colour map of the abundance maps.
    title : str, optional
        Figure title (default: the signal's title).
    figsize : (float, float), optional
        Inches (default: 15 wide, 3.4 per phase).
    filename : str or pathlib.Path, optional
        Also save the figure there (format from the extension, e.g. ``.png`` or ``.pdf``).
    dpi : int
        Resolution when saving.

    Returns
    -------
    matplotlib.figure.Figure
        k rows of three panels: map (with colour bar), spectrum, composition.

    Raises
    ------
    ValueError
        If the signal has no decomposition results, or its smart_nmf result is stale (another
        decomposition ran since, or the signal was cropped after the fit).
    """
    import matplotlib.pyplot as plt

    if signal.metadata.has_item("SmartNMF"):
        from esmpy_hs.signals._record import check_current

        check_current(signal)  # a later decomposition or a crop: refuse the stale fit
    factors, loadings = _decomposition(signal)
    k = factors.shape[1]
    info = _smart_nmf(signal)
    q = _quantification(signal) if info is not None else None

    if phase_names is None:
        phase_names = info["names"] if info is not None else [f"phase {i}" for i in range(k)]
    phase_names = [str(n) for n in phase_names]
    if len(phase_names) != k:
        raise ValueError(f"{len(phase_names)} phase names for {k} phases")

    sig_ax = signal.axes_manager.signal_axes[0]
    data_energies = np.asarray(sig_ax.axis, dtype=np.float64)
    if str(sig_ax.units).strip() == "eV":
        data_energies = data_energies / 1000.0
    if info is not None:
        c0, c1 = info["channels"]
        energies = info["model"].energies
        beam = float(info["model"].beam_energy)
        parts_by_phase = [_contributions(info, i) for i in range(k)]
    else:
        c0, c1 = 0, factors.shape[0]
        energies = data_energies
        beam = None
        parts_by_phase = [[] for _ in range(k)]
    x_range = _x_range(energies, parts_by_phase, energy_range, beam)

    nav_shape, nav_axes = _navigation(signal)
    masks = _dominant_masks(loadings)
    stray = list(info["model"].stray_elements) if info is not None else []

    if figsize is None:
        figsize = (15.0, 3.4 * k + 0.6)
    fig = plt.figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(k, 3, width_ratios=(1.15, 3.6, 1.0))
    for i in range(k):
        name = phase_names[i]
        ax_map = fig.add_subplot(grid[i, 0])
        ax_spec = fig.add_subplot(grid[i, 1])
        ax_txt = fig.add_subplot(grid[i, 2])

        _plot_map(fig, ax_map, loadings[:, i], nav_shape, nav_axes, cmap)
        ax_map.set_title(name + _main_elements(q, i), fontsize=10)

        mask = masks[i]
        data_mean = _region_mean(signal, mask)
        hbar = loadings[mask].mean(axis=0)  # mean abundances over the region
        model_mean = factors[c0:c1] @ hbar
        phase_part = factors[c0:c1, i] * hbar[i]
        parts = [dict(p, spectrum=p["spectrum"] * hbar[i]) for p in parts_by_phase[i]]
        _plot_spectrum(
            ax_spec,
            energies=energies,
            data_mean=data_mean,
            data_energies=data_energies,
            model_mean=model_mean,
            phase_part=phase_part,
            parts=parts,
            log=log,
            n_labels=n_labels,
            x_range=x_range,
            name=name,
        )
        ax_spec.set_title(
            f"spectrum: mean of the {int(mask.sum())} pixels where it dominates "
            f"(mean abundance there {hbar[i]:.2f})",
            fontsize=10,
        )

        ax_txt.axis("off")
        ax_txt.set_title("composition", fontsize=10)
        ax_txt.text(
            0.02,
            0.98,
            _composition_text(q, i, max_elements, stray),
            transform=ax_txt.transAxes,
            va="top",
            ha="left",
            family="monospace",
            fontsize=9,
        )
    suptitle = title if title is not None else str(signal.metadata.General.title or "")
    cal_line = _calibration_line(signal) if info is not None else ""
    fig.suptitle("\n".join(t for t in (suptitle, cal_line) if t))
    if filename is not None:
        fig.savefig(filename, dpi=dpi)
    return fig


# ---------------------------------------------------------------------------------------------
# element maps
# ---------------------------------------------------------------------------------------------


def _map_element(m) -> str:
    els = m.metadata.get_item("Sample.elements", None)
    if els is not None and len(els) == 1:
        return str(els[0])
    return str(m.metadata.General.title)


def _map_image(m) -> np.ndarray:
    return as_numpy(m.data).astype(np.float64)


def plot_element_maps(
    maps: Sequence[Any],
    *,
    reference: Sequence[Any] | None = None,
    reference_label: str = "line windows",
    sigma: bool = False,
    elements: Sequence[str] | None = None,
    ncols: int = 6,
    percentile: float = 99.5,
    cmap: str = "viridis",
    title: str | None = None,
    filename: str | Path | None = None,
    dpi: int = 150,
):
    """One figure of element maps, with a shared colour scale per element.

    Parameters
    ----------
    maps : list of Signal2D
        From :meth:`EDSespm.get_element_maps` (one per element, 2-D navigation).
    reference : list of Signal2D, optional
        Maps to draw under each element's map with the same colour scale, matched by element
        (``metadata.Sample.elements`` or the title), e.g. the result of exspy's
        ``s.quantification(s.get_lines_intensity(), "CL", factors)``.
    reference_label : str
        Row label of the reference maps.
    sigma : bool
        Also draw the 1-σ map (``√ metadata.Signal.Noise_properties.variance``), on its own
        scale.
    elements : list of str, optional
        Which elements, in order (default: all of ``maps``).
    ncols : int
        Elements per row of panels.
    percentile : float
        Each element's colour scale runs from 0 to this percentile of its map and reference
        values (a few hot pixels do not wash out the map).
    cmap, title, filename, dpi
        Colour map, figure title, file to save (format from the extension) and its resolution.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    by_el = {_map_element(m): m for m in maps}
    refs = {_map_element(m): m for m in (reference or [])}
    chosen = list(by_el) if elements is None else [str(e) for e in elements]
    missing = [e for e in chosen if e not in by_el]
    if missing:
        raise ValueError(f"no map for {missing}; maps hold {list(by_el)}")
    if not chosen:
        raise ValueError("no element map to plot")
    kinds = ["fit"] + (["reference"] if reference else []) + (["sigma"] if sigma else [])
    ncols = max(1, min(int(ncols), len(chosen)))
    nblocks = -(-len(chosen) // ncols)
    nrows = nblocks * len(kinds)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.6 * ncols, 2.3 * nrows + 0.5), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    for i, el in enumerate(chosen):
        block, col = divmod(i, ncols)
        m = by_el[el]
        unit = str(m.metadata.get_item("ElementMap.unit", "") or "")
        img = _map_image(m)
        if img.ndim != 2:
            raise ValueError(f"element maps must be 2-D images, got shape {img.shape} for {el}")
        pool = [img[np.isfinite(img)]]
        ref_img = None
        if el in refs:
            ref_img = _map_image(refs[el])
            pool.append(ref_img[np.isfinite(ref_img)])
        values = np.concatenate(pool)
        vmax = float(np.percentile(values, percentile)) if values.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        for r, kind in enumerate(kinds):
            ax = axes[block * len(kinds) + r, col]
            if kind == "fit":
                data, label, lo, hi = img, f"{el} (smart_nmf)", 0.0, vmax
            elif kind == "reference":
                if ref_img is None:
                    continue
                data, label, lo, hi = ref_img, f"{el} ({reference_label})", 0.0, vmax
            else:
                var = m.metadata.get_item("Signal.Noise_properties.variance", None)
                if var is None:
                    continue
                data = np.sqrt(np.clip(_map_image(var), 0, None))
                label, lo, hi = f"{el} 1σ", 0.0, None
            ax.axis("on")
            im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8, label=unit)
    if title:
        fig.suptitle(title)
    if filename is not None:
        fig.savefig(filename, dpi=dpi)
    return fig

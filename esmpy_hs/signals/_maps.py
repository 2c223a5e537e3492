"""HyperSpy side of element maps and region compositions (computed in esmpy_hs.element_maps).

:func:`get_element_maps` wraps the per-pixel compositions as HyperSpy signals on the map's
navigation axes, like exspy's ``get_lines_intensity``; :func:`quantify_region` turns a boolean
navigation image or a HyperSpy ROI into the pixels to sum; :func:`navigation_mask` does that
conversion.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from esmpy_hs import element_maps as em
from esmpy_hs.signals._decomposition import fit_arrays


def _rows(signal, family):
    fit = fit_arrays(signal)
    return em.phase_rows(fit["W"], fit["model"], family), fit


def _nav_shape(signal) -> tuple[int, ...]:
    am = signal.axes_manager
    return tuple(int(n) for n in am._navigation_shape_in_array) if am.navigation_dimension else ()


def _lazy_stack(H: np.ndarray, rows, unit: str, nav_shape: tuple[int, ...]):
    """(nav..., e, 2) dask array of values and σ, computed block by block from H."""
    import dask.array as da

    row_pixels = math.prod(nav_shape[1:]) if len(nav_shape) > 1 else 1
    rows_per_chunk = max(1, em._BLOCK // max(row_pixels, 1))
    Hd = da.from_array(H, chunks=(rows_per_chunk * row_pixels, H.shape[1]))
    e = len(rows.elements)
    out = Hd.map_blocks(
        em.map_block,
        rows,
        unit,
        chunks=(Hd.chunks[0], (e,), (2,)),
        new_axis=2,
        dtype=np.float64,
        meta=np.empty((0, 0, 0)),
    )
    return out.reshape(*(nav_shape or (1,)), e, 2)


def _nav_signal(signal, data):
    """A signal with ``data`` on ``signal``'s navigation axes (lazy if ``data`` is dask)."""
    return signal._get_navigation_signal(data=data)


def get_element_maps(signal, unit: str = "at.%", family: str | None = None) -> list:
    """See :meth:`EDSespm.get_element_maps`."""
    em._check_unit(unit)
    rows, fit = _rows(signal, family)
    nav_shape = _nav_shape(signal)
    H = fit["H"]
    n_pix = math.prod(nav_shape) if nav_shape else 1
    if H.shape[0] != n_pix:
        raise ValueError(
            f"the loadings hold {H.shape[0]} pixels but the map has {n_pix}: was the signal "
            "cropped or rebinned after the fit? Fit it again"
        )
    if getattr(signal, "_lazy", False):
        stack = _lazy_stack(H, rows, unit, nav_shape)
    else:
        values, sigmas = em.element_maps(rows, H, unit)
        stack = np.stack([values.T, sigmas.T], axis=-1).reshape(*(nav_shape or (1,)), -1, 2)
    maps = []
    for i, el in enumerate(rows.elements):
        value = stack[..., i, 0]
        variance = stack[..., i, 1] ** 2
        m = _nav_signal(signal, value)
        m.metadata.General.title = el
        m.metadata.set_item("Sample.elements", [el])
        m.metadata.set_item("Signal.quantity", f"{el} ({unit})")
        var = _nav_signal(signal, variance)
        var.metadata.General.title = f"{el} variance ({unit})²"
        m.metadata.set_item("Signal.Noise_properties.variance", var)
        m.metadata.set_item(
            "ElementMap",
            {
                "element": el,
                "unit": unit,
                "family": rows.family,
                "sigma": "counting floor of the pixel's element counts (esmpy_hs.element_maps)",
            },
        )
        maps.append(m)
    return maps


def navigation_mask(signal, region: Any) -> np.ndarray:
    """Flat boolean mask over the pixels (row-major, as the loadings) from a mask or an ROI."""
    nav_shape = _nav_shape(signal)
    n_pix = math.prod(nav_shape) if nav_shape else 1
    from hyperspy.roi import BaseROI, Line2DROI

    if isinstance(region, Line2DROI):
        raise ValueError("a line ROI has no area; use a rectangle, circle or polygon ROI")
    if isinstance(region, BaseROI):
        index = np.arange(n_pix, dtype=np.float64).reshape(nav_shape or (1,))
        image = signal._get_navigation_signal(data=index)
        picked = np.asarray(region(image).data, dtype=np.float64).ravel()
        mask = np.zeros(n_pix, dtype=bool)
        mask[picked[np.isfinite(picked)].astype(np.intp)] = True
        return mask
    data = getattr(region, "data", region)
    if hasattr(data, "compute"):
        data = data.compute()
    mask = np.asarray(data)
    if mask.dtype != bool:
        raise ValueError(
            f"the region must be a boolean navigation image or a HyperSpy ROI, got {mask.dtype} "
            "values; use e.g. s_map.data > threshold"
        )
    if mask.shape != (nav_shape or (1,)):
        raise ValueError(
            f"the mask has shape {mask.shape}; the navigation image of this map is "
            f"{nav_shape} (rows, columns)"
        )
    return mask.ravel()


def quantify_region(signal, region: Any, family: str | None = None, name: str = "region"):
    """See :meth:`EDSespm.quantify_region`."""
    rows, fit = _rows(signal, family)
    mask = navigation_mask(signal, region)
    if mask.size != fit["H"].shape[0]:
        raise ValueError(
            f"the loadings hold {fit['H'].shape[0]} pixels but the map has {mask.size}"
        )
    if not mask.any():
        raise ValueError("the region holds no pixel of the map")
    return em.region_quantification(rows, fit["H"][mask], name=name)


def stack_element_maps(maps: list):
    """One signal holding element maps (navigation: the elements; signal: the map), for saving.

    ``metadata.Sample.elements`` lists the elements in order; the variances are stacked the
    same way in ``metadata.Signal.Noise_properties.variance``.
    """
    import hyperspy.api as hs

    if not maps:
        raise ValueError("no element maps to stack")
    first = maps[0]
    elements = [m.metadata.General.title for m in maps]
    axes = [{"name": "element", "size": len(maps), "navigate": True}]
    axes += [dict(a, navigate=False) for a in first.axes_manager._get_axes_dicts()]

    def stacked(arrays):
        arrays = [np.asarray(a.compute() if hasattr(a, "compute") else a) for a in arrays]
        return hs.signals.BaseSignal(np.stack(arrays), axes=axes).transpose(
            signal_axes=first.axes_manager.signal_dimension
        )

    out = stacked([m.data for m in maps])
    var = stacked([m.metadata.Signal.Noise_properties.variance.data for m in maps])
    unit = first.metadata.get_item("ElementMap.unit", "")
    out.metadata.General.title = f"element maps ({unit})"
    var.metadata.General.title = f"element map variances ({unit})²"
    out.metadata.set_item("Sample.elements", elements)
    out.metadata.set_item("Signal.quantity", unit)
    out.metadata.set_item("Signal.Noise_properties.variance", var)
    node = first.metadata.get_item("ElementMap").as_dictionary()
    node["element"] = elements
    out.metadata.set_item("ElementMap", node)
    return out

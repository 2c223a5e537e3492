"""esmpy-hs: physics-guided Poisson NMF for STEM-EDX spectrum images.

A HyperSpy extension. After ``pip install esmpy-hs``::

    >>> import hyperspy.api as hs
    >>> s = hs.load("map.hspy")
    >>> s.set_signal_type("EDS_ESMPY")
    >>> s.decomposition(algorithm="smart_nmf", output_dimension=3)

HyperSpy imports this package whenever it starts or loads a file, so nothing
heavy (HyperSpy itself, numba, xraylib) is imported here: the public names
below are resolved on first access.
"""

from __future__ import annotations

import importlib

from esmpy_hs._version import __version__

# public name -> module that defines it
_PUBLIC = {
    "EDSespm": "esmpy_hs.signals.eds_espm",
    "LazyEDSespm": "esmpy_hs.signals.eds_espm",
    "SmartNMF": "esmpy_hs.nmf",
    "PhysicsModel": "esmpy_hs.physics",
    "build_G": "esmpy_hs.physics",
    "UnexplainedCountsWarning": "esmpy_hs.signals._model_check",
    "TradedPhaseWarning": "esmpy_hs.signals._decomposition",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'esmpy_hs' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

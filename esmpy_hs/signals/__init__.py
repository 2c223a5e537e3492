"""HyperSpy signal classes of esmpy-hs (``signal_type="EDS_ESMPY"``)."""

from esmpy_hs.signals.eds_espm import EDSespm, LazyEDSespm

__all__ = ["EDSespm", "LazyEDSespm"]

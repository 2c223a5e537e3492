"""HyperSpy signal classes of esmpy-hs (``signal_type="EDS_ESMPY"``) and the exceptions and
warnings of their input checks."""

from esmpy_hs.signals._metadata import ImplausibleInputWarning, MissingMetadataError
from esmpy_hs.signals._record import StaleResultError
from esmpy_hs.signals.eds_espm import EDSespm, LazyEDSespm

__all__ = [
    "EDSespm",
    "ImplausibleInputWarning",
    "LazyEDSespm",
    "MissingMetadataError",
    "StaleResultError",
]

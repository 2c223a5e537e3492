"""The EDS_ESMPY signal classes: exspy's EDS-TEM spectrum plus physics-guided NMF.

``EDSespm`` subclasses exspy's :class:`~exspy.signals.EDSTEMSpectrum`, so every
exspy method (lines, intensities, models, Cliff–Lorimer quantification) keeps
working. exspy compares ``metadata.Signal.signal_type`` with the literal
strings ``"EDS_TEM"``/``"EDS_SEM"`` in three places; this module overrides each
of them so that a signal of type ``EDS_ESMPY`` behaves as an EDS-TEM signal:

1. ``_set_default_param`` (run by ``__init__``) resets the type to ``EDS_TEM``;
2. ``_get_line_energy(..., FWHM_MnKa="auto")`` raises for other types;
3. ``get_take_off_angle`` fails for other types.
"""

from __future__ import annotations

from exspy.signals import EDSTEMSpectrum, LazyEDSTEMSpectrum
from exspy.utils.eds import take_off_angle as _take_off_angle

SIGNAL_TYPE = "EDS_ESMPY"


class EDSespm(EDSTEMSpectrum):
    """STEM-EDX spectrum image to be unmixed by physics-guided Poisson NMF.

    Create one with ``s.set_signal_type("EDS_ESMPY")`` on any 1-D signal (or
    an EDS_TEM signal); the metadata of exspy's EDS-TEM signals is used
    unchanged.
    """

    _signal_type = SIGNAL_TYPE

    # -- exspy trap 1: the signal type is rewritten to "EDS_TEM" ------------
    def _set_default_param(self) -> None:
        super()._set_default_param()
        self.metadata.Signal.signal_type = SIGNAL_TYPE

    # -- exspy trap 2: FWHM_MnKa="auto" only resolved for EDS_TEM/EDS_SEM ---
    def _get_line_energy(self, Xray_line, FWHM_MnKa=None):
        if isinstance(FWHM_MnKa, str) and FWHM_MnKa == "auto":
            FWHM_MnKa = self.metadata.get_item(
                "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa"
            )
        return super()._get_line_energy(Xray_line, FWHM_MnKa=FWHM_MnKa)

    # -- exspy trap 3: get_take_off_angle has no branch for our type --------
    def get_take_off_angle(self) -> float:
        """Take-off angle (degrees) from the TEM stage and detector metadata.

        Reads ``Acquisition_instrument.TEM.Stage.tilt_alpha``/``tilt_beta``
        and ``Acquisition_instrument.TEM.Detector.EDS.azimuth_angle``/
        ``elevation_angle`` (degrees), as exspy does for EDS_TEM signals.

        Returns
        -------
        float
            The take-off angle in degrees.
        """
        mp = self.metadata.Acquisition_instrument.TEM
        return _take_off_angle(
            mp.get_item("Stage.tilt_alpha", None),
            mp.get_item("Detector.EDS.azimuth_angle", None),
            mp.get_item("Detector.EDS.elevation_angle", None),
            mp.get_item("Stage.tilt_beta", 0.0),
        )


class LazyEDSespm(EDSespm, LazyEDSTEMSpectrum):
    """Lazy (dask-backed) twin of :class:`EDSespm`."""

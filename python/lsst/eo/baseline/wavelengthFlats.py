r"""Wavelength flats (``FLAT/LAMBDA``): response and flat non-uniformity per LED/filter and amplifier.

Exposures are grouped by source (CCOBLED header, ``NONE`` if absent) and FILTER.  For every group
*ℓ* of :math:`K` exposures *i* and every amplifier, on the imaging area after ISR (per-row serial
overscan, by default combined bias and dark x DARKTIME; adu) less ``edgeMargin`` pixels on each side:

* :math:`m_i`: 3-sigma clipped mean (adu) of exposure *i*; ``signal_adu`` is their mean;
* ``response_e_per_s`` = :math:`\langle g\, m_i / t_i \rangle` with :math:`t_i` = EXPTIME and
  :math:`g` the run's PTC gain (e-/adu; the camera-model gain without a usable PTC gain,
  `lsst.eo.baseline.runGains`, per amplifier in ``gain_e_per_adu`` and ``gain_source``): the mean
  photo-electron rate per pixel (dark current is subtracted with the combined dark, adu/s x
  DARKTIME; without it, it adds D x DARKTIME / EXPTIME, ~0.005 e-/s);
* ``response_per_ccobflux`` = :math:`\langle g\, m_i / (t_i\, \mathrm{CCOBFLUX}_i) \rangle`:
  the same per unit of the monitoring photodiode flux, which removes the source's jitter and
  makes LEDs comparable (e-/pixel per CCOBFLUX unit and second);
* ``relative_response``: ``response_e_per_s`` / its median over the detector's amplifiers (same
  LED), i.e. the amplifier's response relative to the CCD;
* flat non-uniformity.  With :math:`n_i = I_i / m_i` the images normalised to unit mean and
  :math:`M = \frac{1}{K}\sum_i n_i`, the fixed-pattern (pixel response) variance is

  .. math::

     \sigma^2_{fp} = \frac{\mathrm{clipvar}(M)}{c^2} - \frac{\sigma^2_t}{K}

  where :math:`c` is the Gaussian 3-sigma clipping factor
  (`~lsst.eo.baseline.afwstats.gaussian_clip_factor`) and :math:`\sigma^2_t` the temporal (shot +
  read) variance of one normalised image.  With
  :math:`K \ge 2` it is measured, :math:`\sigma^2_t = \langle \mathrm{clipvar}(n_i - n_{i+1})
  \rangle / (2 c^2)` over consecutive pairs, brighter-fatter correlations included
  (``noise_method`` = ``pairs``).  With a single exposure it is modelled from the gain,
  :math:`\sigma^2_t = C_{00}(\mu) / \mu^2 + (\sigma_{rn} / m)^2` with :math:`\mu = g m` and
  the brighter-fatter variance :math:`C_{00} = (e^{2 a_{00} \mu} - 1) / (2 a_{00})` for a typical
  ``bfA00`` (``noise_method`` = ``gain``): an amplifier whose :math:`a_{00}` differs by
  :math:`10^{-6}` from it has its shot variance wrong by ~3 % at 3e4 e- (the pair method is exact;
  take two flats per LED).

  ``nonuniformity`` = :math:`\sigma_{fp}` (fraction of the mean): all fixed structure, large-scale
  illumination/response gradients included.  ``prnu`` is the same after dividing :math:`M` by a
  smooth model (a 2-d polynomial of degree ``largeScaleDegree`` fitted to the medians of
  ``blockSize`` x ``blockSize`` blocks), i.e. the pixel-scale response non-uniformity;
  ``large_scale_rms`` is the rms of that model.  Both are clipped statistics: defects and
  outliers beyond 3 sigma are excluded.

All statistics use every ``statsRowStride``-th row of the imaging area (default 4: 2.5e5 pixels
per amplifier, which give a mean to 2e-5 and a variance to 0.3 %, far below the systematic errors)
to keep the cost per exposure near that of reading it.

Bad amplifiers (`lsst.eo.baseline.ampFlags`): an amplifier all zero, saturated or dead in any of
the wavelength flats, or flagged in the metadata (``AMP_FLAGS``) of the bias or dark used, is not
measured: its rows (every LED/filter) have NaN values and a non-zero ``flags`` column, and a
warning names it; the detector median of ``relative_response`` is taken over the other amplifiers.
A row whose signal or non-uniformity is not finite is flagged ``NONFINITE``.

eo_pipe only makes mosaics of wavelength flats (no response or PRNU numbers): these tables are new.
Memory: each group of ``ampsPerRead`` amplifiers of every input is read once and held together.
"""

from __future__ import annotations

__all__ = [
    "EoWavelengthFlatsConfig",
    "EoWavelengthFlatsConnections",
    "EoWavelengthFlatsTask",
    "fixed_pattern_rms",
    "large_scale_model",
    "pair_temporal_variance",
    "shot_noise_variance",
]

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.images import MaskedImage
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats, gaussian_clip_factor
from .ampFlags import apply_amp_flags, calib_amp_flags, describe_flagged, nan_median, raw_amp_flags
from .ampStream import amp_groups, read_amp_group
from .calibCombine import amp_views
from .calibInputs import (
    SwitchedCalibConnections,
    bias_prerequisite,
    dark_prerequisite,
    ptc_prerequisite,
    raw_exposures,
)
from .camera import DetectorInfo, get_camera
from .headerValues import header_float
from .isrTask import EoIsrTask
from .runGains import RunGains, quantum_gains, run_gains


def pair_temporal_variance(normed: Sequence[np.ndarray], nsig: float = 3.0) -> float:
    """Temporal variance of one unit-mean image from differences of consecutive images.

    Parameters
    ----------
    normed : sequence of `numpy.ndarray`
        At least two images of the same source, each divided by its own mean.
    nsig : `float`, optional
        Clipping threshold.

    Returns
    -------
    variance : `float`
        Mean over consecutive pairs of ``clipvar(n_i - n_{i+1}) / 2``, corrected for clipping.
    """
    if len(normed) < 2:
        raise ValueError("pair_temporal_variance needs at least two images")
    factor2 = gaussian_clip_factor(nsig, 3) ** 2
    values = [
        clipped_stats(np.subtract(a, b, dtype=np.float32), nsig).variance / 2.0 / factor2
        for a, b in zip(normed[:-1], normed[1:], strict=True)
    ]
    return float(np.mean(values))


def shot_noise_variance(mean_adu: float, gain: float, read_noise_adu: float = 0.0, a00: float = 0.0) -> float:
    """Temporal variance of one unit-mean flat from shot noise and read noise.

    Parameters
    ----------
    mean_adu : `float`
        Mean signal (adu).
    gain : `float`
        Gain (e-/adu).
    read_noise_adu : `float`, optional
        Read noise (adu).
    a00 : `float`, optional
        Brighter-fatter coefficient (1/e-, negative); 0 for Poisson statistics.

    Returns
    -------
    variance : `float`
        ``C00(mu) / mu^2 + (rn / m)^2`` with ``mu = g m`` (e-) and Astier et al. (2019) Eq. 16,
        ``C00 = (exp(2 a00 mu) - 1) / (2 a00)`` (``mu`` for ``a00 = 0``).
    """
    if not (mean_adu > 0 and gain > 0):
        return np.nan
    mu = gain * mean_adu
    c00 = np.expm1(2.0 * a00 * mu) / (2.0 * a00) if a00 != 0.0 else mu
    return float(c00 / mu**2 + (read_noise_adu / mean_adu) ** 2)


def large_scale_model(image: np.ndarray, block: int = 32, degree: int = 2) -> np.ndarray:
    """Smooth model of an image: 2-d polynomial fitted to the medians of square blocks.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image (non-finite values ignored).
    block : `int`, optional
        Block side (pixels, even); incomplete blocks at the far edges are not used for the fit.  The
        median of a block is taken over its pixels of even row and column (a quarter of them):
        ample for a smooth model, four times cheaper.
    degree : `int`, optional
        Total degree of the polynomial (terms ``x^i y^j`` with ``i + j <= degree``); 0 gives a
        constant.

    Returns
    -------
    model : `numpy.ndarray`
        Model evaluated on every pixel (float32, same shape as ``image``).
    """
    ny, nx = image.shape
    nby, nbx = ny // block, nx // block
    if nby < 1 or nbx < 1:
        raise ValueError(f"Image {image.shape} smaller than one {block}x{block} block")
    step = 2 if block % 2 == 0 else 1
    sub = block // step
    cut = np.asarray(image[: nby * block : step, : nbx * block : step], dtype=np.float32)
    blocks = cut.reshape(nby, sub, nbx, sub).transpose(0, 2, 1, 3).reshape(nby, nbx, sub * sub)
    if np.isfinite(cut).all():
        med = np.median(blocks, axis=2)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(blocks, axis=2)

    # Coordinates scaled to [-1, 1] over the whole image, at block centres.
    def scaled(centres: np.ndarray, n: int) -> np.ndarray:
        return 2.0 * centres / n - 1.0

    yc = scaled((np.arange(nby) + 0.5) * block, ny)
    xc = scaled((np.arange(nbx) + 0.5) * block, nx)
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    yy, xx = np.meshgrid(yc, xc, indexing="ij")
    good = np.isfinite(med)
    design = np.column_stack([(xx[good] ** i) * (yy[good] ** j) for i, j in terms])
    coeffs, *_ = np.linalg.lstsq(design, med[good].astype(np.float64), rcond=None)
    # model = sum_j y^j P_j(x) with P_j(x) = sum_i c_ij x^i: degree + 1 broadcast products (a
    # matrix product would call a multi-threaded BLAS, whose spinning threads cost more CPU).
    x = scaled(np.arange(nx) + 0.5, nx)
    y = scaled(np.arange(ny) + 0.5, ny)
    model = np.zeros((ny, nx), dtype=np.float32)
    for j in range(degree + 1):
        row = sum(c * x**i for c, (i, jj) in zip(coeffs, terms, strict=True) if jj == j)
        model += (y**j).astype(np.float32)[:, None] * np.asarray(row, dtype=np.float32)[None, :]
    return model


def fixed_pattern_rms(image: np.ndarray, temporal_variance: float, nsig: float = 3.0) -> float:
    """Rms of the fixed pattern of a unit-mean image: clipped variance less the temporal part.

    Parameters
    ----------
    image : `numpy.ndarray`
        Unit-mean image (e.g. the mean of K normalised flats).
    temporal_variance : `float`
        Temporal variance of ``image`` (for a mean of K flats: one flat's variance / K).
    nsig : `float`, optional
        Clipping threshold.

    Returns
    -------
    rms : `float`
        ``sqrt(max(clipvar / c^2 - temporal_variance, 0))`` with ``c`` the Gaussian clipping factor.
    """
    var = clipped_stats(image, nsig).variance / gaussian_clip_factor(nsig, 3) ** 2
    return float(np.sqrt(max(var - temporal_variance, 0.0))) if np.isfinite(var) else np.nan


class EoWavelengthFlatsConnections(SwitchedCalibConnections):
    """Connections of `EoWavelengthFlatsTask`."""

    switches = {"bias": "isr.doBias", "dark": "isr.doDark"}

    raws = raw_exposures("Raw wavelength flats of one detector (any number of LEDs/filters).")
    bias = bias_prerequisite()
    dark = dark_prerequisite()
    ptc = ptc_prerequisite()
    wavelengthFlats = cT.Output(
        name="eoWavelengthFlats",
        doc="Response and flat non-uniformity per LED/filter and amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoWavelengthFlatsConfig(PipelineTaskConfig, pipelineConnections=EoWavelengthFlatsConnections):
    """Configuration of `EoWavelengthFlatsTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan, bias, dark; adu).")
    nSigmaClip = Field[float](doc="Clipping threshold of the clipped statistics.", default=3.0)
    edgeMargin = Field[int](
        doc="Pixels excluded at each edge of the imaging area (divisadero tearing, edge roll-off).",
        default=5,
    )
    statsRowStride = Field[int](
        doc="Statistics use every N-th row of the imaging area (1: all rows).",
        default=4,
    )
    blockSize = Field[int](
        doc="Block side (pixels of the row-subsampled image) of the large-scale model.", default=32
    )
    largeScaleDegree = Field[int](doc="Total degree of the large-scale polynomial model.", default=2)
    bfA00 = Field[float](
        doc="Brighter-fatter a00 (1/e-) of the shot-noise model used for a group of a single exposure "
        "(a typical LSSTCam value; 0: Poisson).",
        default=-2.0e-6,
    )
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)

    def setDefaults(self):
        super().setDefaults()
        self.isr.doBias = True
        self.isr.doDark = True
        # As eoBias/eoDark are built (see calibCombine): no parallel-overscan correction.
        self.isr.doParallelOverscan = False

    def validate(self):
        super().validate()
        if self.isr.doApplyGains:
            raise ValueError("Wavelength flats are measured in adu (gains applied after): isr.doApplyGains")


def _group_key(header: dict[str, Any]) -> tuple[str, str]:
    led = header.get("CCOBLED")
    filt = header.get("FILTER")
    return (str(led) if led not in (None, "") else "NONE", str(filt) if filt not in (None, "") else "NONE")


class EoWavelengthFlatsTask(PipelineTask):
    """Measure the response and non-uniformity of every amplifier for every LED/filter."""

    ConfigClass = EoWavelengthFlatsConfig
    _DefaultName = "eoWavelengthFlats"
    config: EoWavelengthFlatsConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        dark = butlerQC.get(inputRefs.dark) if self.config.isr.doDark else None
        detector = get_camera()[outputRefs.wavelengthFlats.dataId["detector"]]
        gains = quantum_gains(butlerQC, inputRefs, detector)
        butlerQC.put(self.run(handles, detector, bias=bias, dark=dark, gains=gains), outputRefs)

    def _measure_group(
        self, images: list[np.ndarray], means: list[float], gain: float, read_noise_adu: float
    ) -> dict[str, Any]:
        """Non-uniformity of one amplifier from the K trimmed images (adu) of one group."""
        cfg = self.config
        nsig = cfg.nSigmaClip
        normed = [
            np.multiply(im, np.float32(1.0 / m), dtype=np.float32)
            for im, m in zip(images, means, strict=True)
        ]
        k = len(normed)
        if k >= 2:
            temporal = pair_temporal_variance(normed, nsig)
            method = "pairs"
        else:
            temporal = shot_noise_variance(means[0], gain, read_noise_adu, cfg.bfA00)
            method = "gain"
        mean_image = normed[0].copy()
        for other in normed[1:]:
            mean_image += other
        mean_image *= np.float32(1.0 / k)
        total = fixed_pattern_rms(mean_image, temporal / k, nsig)
        model = large_scale_model(mean_image, cfg.blockSize, cfg.largeScaleDegree)
        prnu = fixed_pattern_rms(mean_image / model, temporal / k, nsig)
        return {
            "nonuniformity": total,
            "prnu": prnu,
            "large_scale_rms": float(np.std(model, dtype=np.float64) / np.mean(model, dtype=np.float64)),
            "temporal_rms": float(np.sqrt(temporal)),
            "noise_method": method,
        }

    @staticmethod
    def _unmeasured(members: Sequence[int], info: Sequence[dict[str, float]], gain: float) -> dict[str, Any]:
        """Row of an amplifier that is not measured: NaN metrics, the inputs as for a measured one.

        Parameters
        ----------
        members : sequence of `int`
            Indices of the group's exposures in ``info``.
        info : sequence of `dict`
            ``exptime`` and ``ccobflux`` of every exposure.
        gain : `float`
            Gain of the amplifier (e-/adu).

        Returns
        -------
        row : `dict`
            The keys of a measured row.
        """
        nan = float("nan")
        with np.errstate(invalid="ignore"):
            flux = np.array([info[i]["ccobflux"] for i in members], dtype=np.float64)
            exptime = np.array([info[i]["exptime"] for i in members], dtype=np.float64)
            return {
                "nonuniformity": nan, "prnu": nan, "large_scale_rms": nan, "temporal_rms": nan,
                "noise_method": "none", "signal_adu": nan, "response_adu_per_s": nan,
                "response_e_per_s": nan, "response_per_ccobflux": nan, "ccobflux": float(np.mean(flux)),
                "exptime_s": float(np.mean(exptime)), "n_exposures": len(members), "gain_e_per_adu": gain,
            }  # fmt: skip

    def run(
        self,
        raws: Sequence[Any],
        detector: DetectorInfo,
        bias: MaskedImage | None = None,
        dark: MaskedImage | None = None,
        gains: RunGains | None = None,
    ) -> Struct:
        """Measure response and non-uniformity per LED/filter group and amplifier.

        Parameters
        ----------
        raws : sequence
            Handles of raw wavelength flats.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias, adu (required if ``isr.doBias``).
        dark : `lsst.images.MaskedImage`, optional
            Combined dark, adu/s (required if ``isr.doDark``).
        gains : `~lsst.eo.baseline.runGains.RunGains`, optional
            Gains (e-/adu) and their sources; default: camera-model gains (as without a PTC).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``wavelengthFlats``: `astropy.table.Table`, one row per group and amplifier.
        """
        cfg = self.config
        if not raws:
            raise NoWorkFound(f"No wavelength flat for {detector.name}")
        bias_amps = amp_views(bias, detector)
        dark_amps = amp_views(dark, detector)
        e = cfg.edgeMargin
        run_gain = gains if gains is not None else run_gains(detector)
        gains_by_amp = run_gain.gains
        results: dict[tuple[tuple[str, str], str], dict[str, Any]] = {}
        groups: dict[tuple[str, str], list[int]] = {}
        info: list[dict[str, float]] = []
        # Flags of the calibrations used, ORed below with those of every raw input.
        flags = calib_amp_flags(detector.amp_names, bias, dark)
        for amp_group in amp_groups(detector.amp_names, cfg.ampsPerRead):
            exposures = read_amp_group(raws, amp_group)
            if not groups:
                for i, r in enumerate(exposures):
                    groups.setdefault(_group_key(r.header), []).append(i)
                    info.append({"exptime": header_float(r.header, "EXPTIME"),
                                 "ccobflux": header_float(r.header, "CCOBFLUX")})  # fmt: skip
            for amp in amp_group:
                for r in exposures:
                    flags[amp] |= raw_amp_flags(r[amp])
                if flags[amp]:
                    for key, members in groups.items():
                        results[(key, amp)] = self._unmeasured(members, info, gains_by_amp[amp])
                    continue
                for key, members in groups.items():
                    images, means, noise = [], [], []
                    for i in members:
                        r = exposures[i]
                        rows = self.isr.serial_rows(r[amp]) if cfg.isr.doSerialOverscan else None
                        ny, nx = r[amp].data.shape
                        # Only the rows the statistics use go through ISR.
                        used = slice(e, ny - e, cfg.statsRowStride)
                        image = self.isr.image_into(
                            r[amp],
                            np.empty((len(range(ny)[used]), nx), dtype=np.float32),
                            gain=gains_by_amp[amp],
                            dark_time=r.dark_time,
                            bias=None if bias_amps is None else bias_amps[amp],
                            dark=None if dark_amps is None else dark_amps[amp],
                            rows=rows,
                            data_rows=used,
                        )[:, e : nx - e]
                        means.append(clipped_stats(image, cfg.nSigmaClip).mean)
                        images.append(image)
                        noise.append(self.isr.read_noise_adu(r[amp], rows) / gaussian_clip_factor(3.0, 3))
                    g = gains_by_amp[amp]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        rates = np.array(means) / np.array([info[i]["exptime"] for i in members])
                    flux = np.array([info[i]["ccobflux"] for i in members])
                    if not np.all(np.isfinite(means)) or min(means) == 0:
                        # No usable pixel or no signal: the row is flagged NONFINITE below.
                        results[(key, amp)] = self._unmeasured(members, info, g)
                        del images
                        continue
                    row = self._measure_group(images, means, g, float(np.median(noise)))
                    with np.errstate(invalid="ignore", divide="ignore"):
                        row.update(
                            signal_adu=float(np.mean(means)),
                            response_adu_per_s=float(np.mean(rates)),
                            response_e_per_s=float(g * np.mean(rates)),
                            response_per_ccobflux=float(g * np.mean(rates / flux)),
                            ccobflux=float(np.mean(flux)),
                            exptime_s=float(np.mean([info[i]["exptime"] for i in members])),
                            n_exposures=len(members),
                            gain_e_per_adu=g,
                        )
                    results[(key, amp)] = row
                    del images
            del exposures
        rows = []
        for key in groups:
            # Over the measured amplifiers (flagged ones are NaN).
            ccd_median = nan_median([results[(key, a)]["response_e_per_s"] for a in detector.amp_names])
            for amp in detector.amp_names:
                r = results[(key, amp)]
                relative = r["response_e_per_s"] / ccd_median if ccd_median else np.nan
                rows.append(
                    (key[0], key[1], amp, r["n_exposures"], r["exptime_s"], r["signal_adu"],
                     r["response_adu_per_s"], r["response_e_per_s"], r["ccobflux"],
                     r["response_per_ccobflux"], relative, r["nonuniformity"],
                     r["prnu"], r["large_scale_rms"], r["temporal_rms"], r["noise_method"],
                     r["gain_e_per_adu"])
                )  # fmt: skip
        table = Table(
            rows=rows,
            names=("led", "filter", "amp", "n_exposures", "exptime_s", "signal_adu", "response_adu_per_s",
                   "response_e_per_s", "ccobflux", "response_per_ccobflux", "relative_response",
                   "nonuniformity", "prnu", "large_scale_rms", "temporal_rms", "noise_method",
                   "gain_e_per_adu"),
        )  # fmt: skip
        table["exptime_s"].unit = "s"
        table["signal_adu"].unit = "adu"
        table["response_adu_per_s"].unit = "adu/s"
        table["response_e_per_s"].unit = "electron/s"
        run_gain.add_columns(table)
        table.meta.update(
            {"DETECTOR": detector.id, "DET_NAME": detector.name, "EDGE_MARGIN": e,
             "BLOCK_SIZE": cfg.blockSize, "LARGE_SCALE_DEGREE": cfg.largeScaleDegree}
        )  # fmt: skip
        apply_amp_flags(table, flags, required=["signal_adu", "response_e_per_s", "nonuniformity"],
                        skip=["exptime_s", "ccobflux", "gain_e_per_adu"])  # fmt: skip
        flagged: dict[str, int] = {}
        for amp, value in zip(table["amp"], table["flags"], strict=True):
            flagged[str(amp)] = flagged.get(str(amp), 0) | int(value)
        if any(flagged.values()):
            self.log.warning("%s: wavelength flats not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flagged))  # fmt: skip
        self.log.info(
            "%s: %d wavelength flats in %d LED/filter groups (%s)", detector.name, len(raws), len(groups),
            ", ".join(f"{k[0]}/{k[1]}" for k in groups),
        )  # fmt: skip
        return Struct(wavelengthFlats=table)

"""The simulator's truth: every injected parameter, how it is drawn, and how it is stored.

Per amplifier (`AmpTruth`), per detector (`DetectorTruth`: CCD-level drift and illumination
gradient, defect list), per exposure (`ExposureTruth`: source flux jitter, monitoring photodiode) and
per exposure and amplifier (`ExposureAmpTruth`: bias drift, effective gain, charge budget).

Random draws use independent `numpy.random.SeedSequence` streams keyed by the run seed and the
detector id (and the exposure for per-exposure values), so a detector's truth never depends on
which other detectors or exposures are simulated, nor on the number of processes.

Units: charges in electrons (e-), rates in e-/s/pixel, levels in adu, CTI per pixel transfer,
brighter-fatter coefficients a_ij per electron, times in seconds.  The ``a_matrix`` index order
follows cp_pipe's ``aMatrix``: ``a_matrix[i, j]`` with ``i`` the serial (x) lag and ``j`` the
parallel (y) lag, so ``a10`` is the serial and ``a01`` the parallel nearest neighbour.
"""

from __future__ import annotations

__all__ = [
    "A_MATRIX_SIZE",
    "LED_PRNU_SCALE",
    "MODEL_VERSION",
    "AmpTruth",
    "Defect",
    "DetectorTruth",
    "ExposureAmpTruth",
    "ExposureTruth",
    "SimulationTruth",
    "VendorModel",
    "amp_table_row",
    "amp_truth_from_row",
    "draw_detector_truth",
    "draw_exposure_truth",
    "exposure_amp_truths",
    "load_amp_csv",
    "load_truth",
    "vendor_model",
]

import csv
import functools
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import yaml
from astropy.table import Table

from ..camera import AmpLayout, DetectorInfo, get_camera
from ..paths import package_data
from .plans import LEDS, ExposureSpec

MODEL_VERSION = "3"
"""Version of the truth model's equations (doc/simulator.rst); bumped when they change."""

A_MATRIX_SIZE = 8
"""Lags 0..7 of the brighter-fatter a_ij matrix (beyond that a_ij = 0)."""

LED_PRNU_SCALE = {"uv": 2.0, "blue": 1.3, "red": 1.0, "nm750": 1.0, "nm850": 1.2, "nm960": 1.6}
"""Pixel response non-uniformity of each LED relative to the amplifier's ``prnu_rms`` (red)."""

_DETECTOR_EDGE_EXCLUSION = 10
"""Injected defects stay this many pixels away from the detector edges (cp_pipe masks 8/7)."""


@dataclass(frozen=True)
class VendorModel:
    """Distributions from which one vendor's amplifier parameters are drawn.

    Ranges are ``(low, high)`` for uniform draws; lognormal draws give ``(median, sigma_ln)``.
    """

    bias_level: tuple[float, float]
    bias_ramp: tuple[float, float]
    bias_ramp_scale: tuple[float, float]
    bias_row_noise: tuple[float, float]
    bias_col_rms: tuple[float, float]
    bias_drift_amp: tuple[float, float]
    bias_drift_period: tuple[float, float]
    ccd_drift_amp: tuple[float, float]
    ccd_drift_period: tuple[float, float]
    bias_jitter: float
    dark_current: tuple[float, float]
    full_well: tuple[float, float]
    full_well_range: tuple[float, float]
    nl_turnoff_ratio: tuple[float, float]
    nl_power: tuple[int, int]
    a00: tuple[float, float]
    a00_range: tuple[float, float]
    a10_ratio: tuple[float, float]
    a01_ratio: tuple[float, float]
    serial_cti: tuple[float, float]
    parallel_cti: tuple[float, float]
    n_high_serial_cti: tuple[int, int]
    n_high_parallel_cti: tuple[int, int]
    high_cti: tuple[float, float]
    divisadero: tuple[float, float]
    gain_drift: tuple[float, float]
    persistence_q0: tuple[float, float]
    persistence_tau: tuple[float, float]
    prnu_rms: tuple[float, float]
    led_response: dict[str, float]
    hot_pixels_per_amp: float
    bright_columns_per_amp: float
    dark_pixels_per_amp: float
    dark_columns_per_amp: float
    hot_rate: tuple[float, float]
    bright_column_rate: tuple[float, float]
    dark_factor: tuple[float, float]


_ITL = VendorModel(
    bias_level=(14000.0, 24000.0),
    bias_ramp=(1.0, 6.0),
    bias_ramp_scale=(10.0, 40.0),
    bias_row_noise=(0.1, 0.4),
    bias_col_rms=(0.3, 1.2),
    bias_drift_amp=(0.2, 1.5),
    bias_drift_period=(600.0, 3600.0),
    ccd_drift_amp=(0.5, 3.0),
    ccd_drift_period=(1800.0, 7200.0),
    bias_jitter=0.2,
    dark_current=(0.004, 0.5),
    full_well=(1.45e5, 0.08e5),
    full_well_range=(1.1e5, 1.8e5),
    nl_turnoff_ratio=(0.88, 0.97),
    nl_power=(6, 10),
    a00=(-2.0e-6, 0.5e-6),
    a00_range=(-3.3e-6, -1.1e-6),
    a10_ratio=(0.08, 0.14),
    a01_ratio=(0.14, 0.24),
    serial_cti=(1.5e-6, 0.6),
    parallel_cti=(8e-7, 0.6),
    n_high_serial_cti=(2, 4),
    n_high_parallel_cti=(0, 0),
    high_cti=(5e-6, 3e-5),
    divisadero=(0.004, 0.03),
    gain_drift=(0.0005, 0.0015),
    persistence_q0=(15.0, 0.4),
    persistence_tau=(30.0, 90.0),
    prnu_rms=(0.003, 0.006),
    led_response={"uv": 0.60, "blue": 0.88, "red": 1.0, "nm750": 1.02, "nm850": 0.90, "nm960": 0.50},
    hot_pixels_per_amp=8.0,
    bright_columns_per_amp=0.15,
    dark_pixels_per_amp=3.0,
    dark_columns_per_amp=0.1,
    hot_rate=(10.0, 150.0),
    bright_column_rate=(8.0, 60.0),
    dark_factor=(0.2, 0.7),
)

_E2V = VendorModel(
    bias_level=(20000.0, 30000.0),
    bias_ramp=(1.0, 6.0),
    bias_ramp_scale=(10.0, 40.0),
    bias_row_noise=(0.1, 0.4),
    bias_col_rms=(0.3, 1.2),
    bias_drift_amp=(0.2, 1.5),
    bias_drift_period=(600.0, 3600.0),
    ccd_drift_amp=(0.5, 3.0),
    ccd_drift_period=(1800.0, 7200.0),
    bias_jitter=0.2,
    dark_current=(0.003, 0.5),
    full_well=(1.35e5, 0.07e5),
    full_well_range=(1.1e5, 1.7e5),
    nl_turnoff_ratio=(0.88, 0.97),
    nl_power=(6, 10),
    a00=(-2.75e-6, 0.15e-6),
    a00_range=(-3.0e-6, -2.5e-6),
    a10_ratio=(0.10, 0.15),
    a01_ratio=(0.16, 0.22),
    serial_cti=(1.2e-6, 0.6),
    parallel_cti=(6e-7, 0.6),
    n_high_serial_cti=(2, 4),
    n_high_parallel_cti=(0, 0),
    high_cti=(5e-6, 3e-5),
    divisadero=(0.0, 0.0),
    gain_drift=(0.0005, 0.0015),
    persistence_q0=(60.0, 0.4),
    persistence_tau=(40.0, 120.0),
    prnu_rms=(0.003, 0.005),
    led_response={"uv": 0.72, "blue": 0.92, "red": 1.0, "nm750": 0.97, "nm850": 0.78, "nm960": 0.38},
    hot_pixels_per_amp=4.0,
    bright_columns_per_amp=0.08,
    dark_pixels_per_amp=3.0,
    dark_columns_per_amp=0.1,
    hot_rate=(10.0, 150.0),
    bright_column_rate=(8.0, 60.0),
    dark_factor=(0.2, 0.7),
)


def vendor_model(vendor: str) -> VendorModel:
    """Parameter distributions of a vendor (``ITL`` or ``E2V``)."""
    return {"ITL": _ITL, "E2V": _E2V}[vendor.upper()]


@dataclass
class AmpTruth:
    """Injected parameters of one amplifier (see doc/simulator.rst for the equations).

    Attributes
    ----------
    det_name, amp : `str`
        Detector (``R22_S11``) and amplifier (``C10``).
    det_id, amp_index : `int`
        Detector id and HDU index - 1 of the amplifier.
    vendor : `str`
        ``ITL`` or ``E2V``.
    gain : `float`
        True gain, e-/adu (the camera model's value from ``lsstcam_amps.csv`` times 1 + N(0, 1%));
        see ``gain_drift`` for stability flats.
    read_noise : `float`
        White read noise per pixel, e-.
    bias_level : `float`
        Bias offset, adu, before drift and patterns.
    bias_ramp, bias_ramp_scale : `float`
        Start-of-frame row pattern ``bias_ramp * exp(-y / bias_ramp_scale)`` (adu, rows).
    bias_row_noise : `float`
        Per-exposure random row offsets, rms adu (same value over the whole row).
    bias_col_rms : `float`
        Fixed column pattern rms, adu (data and parallel-overscan columns).
    bias_drift_amp, bias_drift_period, bias_drift_phase : `float`
        Amplifier part of the slow bias drift (adu, s, rad).
    dark_current : `float`
        Dark current, e-/s/pixel.
    full_well : `float`
        Pixel full well, e-.
    nl_beta, nl_power : `float`, `int`
        Output non-linearity ``S_out = S (1 - nl_beta (S / full_well) ** nl_power)``.
    linearity_turnoff_adu : `float`
        Derived: measured (non-linear) signal, adu, where ``1 - S_out/S`` reaches 1%.
    ptc_turnoff_adu : `float`
        Derived: ``full_well / gain``, the mean of a (linearity-corrected) flat whose mean pixel
        charge equals the full well.
    ptc_turnoff_onset_adu : `float`
        Derived: mean (adu) of a linearity-corrected flat at which 1% of the pixels reach the full
        well, given the amplifier's response spread (gradient, divisadero, PRNU) and the shot noise
        at full well.  This is where the measured PTC turns off; it sits ~1% below
        ``ptc_turnoff_adu``.
    ptc_turnoff_unlinearized_adu : `float`
        Derived, informative: raw mean signal, adu, where the output non-linearity alone lowers the
        variance of an uncorrected PTC by 2% (``(dS_out/dS)^2 = 0.98``).
    a00, a01, a10 : `float`
        Brighter-fatter coefficients, 1/e- (``a10`` serial, ``a01`` parallel neighbour).
    a_matrix : `numpy.ndarray`
        ``A_MATRIX_SIZE x A_MATRIX_SIZE`` a_ij (i serial lag, j parallel lag); sums to 0 over all
        lags (charge conservation).
    serial_cti, parallel_cti : `float`
        Fraction of charge left behind per transfer.
    divisadero_left, divisadero_right : `float`
        Fractional response deviation of the data column at the amplifier's left/right boundary in
        the assembled CCD (0 at CCD edges and for e2v); decays as ``exp(-d / divisadero_width)``.
    divisadero_width : `float`
        Decay length in columns.
    divisadero_tearing : `float`
        Derived, as eo_pipe: max over the amp's boundaries of the larger |deviation| either side.
    gain_drift : `float`
        Fractional gain change from the first to the last GAIN_STABILITY flat (linear in time).
    persistence_q0, persistence_tau : `float`
        Trapped charge after a saturating exposure (e-/pixel) and its release time constant (s).
    prnu_rms : `float`
        Pixel response non-uniformity (fraction, red LED; scaled per LED by `LED_PRNU_SCALE`).
    led_response : `dict` [`str`, `float`]
        Mean relative response of the amplifier to each LED.
    lsst_num : `str`
        CCD serial (LSST_NUM).
    """

    det_name: str
    det_id: int
    amp: str
    amp_index: int
    vendor: str
    lsst_num: str
    gain: float
    read_noise: float
    bias_level: float
    bias_ramp: float
    bias_ramp_scale: float
    bias_row_noise: float
    bias_col_rms: float
    bias_drift_amp: float
    bias_drift_period: float
    bias_drift_phase: float
    dark_current: float
    full_well: float
    nl_beta: float
    nl_power: int
    linearity_turnoff_adu: float
    ptc_turnoff_adu: float
    ptc_turnoff_unlinearized_adu: float
    ptc_turnoff_onset_adu: float
    a00: float
    a01: float
    a10: float
    serial_cti: float
    parallel_cti: float
    divisadero_left: float
    divisadero_right: float
    divisadero_width: float
    divisadero_tearing: float
    gain_drift: float
    persistence_q0: float
    persistence_tau: float
    prnu_rms: float
    led_response: dict[str, float] = field(default_factory=dict)
    a_matrix: np.ndarray = field(default_factory=lambda: np.zeros((A_MATRIX_SIZE, A_MATRIX_SIZE)))

    def nonlinear(self, charge: np.ndarray | float) -> np.ndarray | float:
        """Output signal (e-) for a charge packet (e-): ``S (1 - beta (S/FW)^p)``."""
        x = np.asarray(charge, dtype=np.float64) / self.full_well
        return np.asarray(charge) * (1.0 - self.nl_beta * x**self.nl_power)


@dataclass
class Defect:
    """One injected defect, in raw amplifier and in assembled detector coordinates (0-based).

    Attributes
    ----------
    det_name, amp : `str`
        Detector and amplifier.
    kind : `str`
        ``hot_pixel``, ``bright_column``, ``dark_pixel`` or ``dark_column``.
    x_raw, y0_raw, y1_raw : `int`
        Raw column and first/last raw row (inclusive; equal for a pixel).
    x_det, y0_det, y1_det : `int`
        Same in the trimmed, assembled detector (``y0_det <= y1_det``).
    value : `float`
        Excess dark current (e-/s/pixel) for hot/bright defects, relative response (0-1) for dark
        defects.
    """

    det_name: str
    amp: str
    kind: str
    x_raw: int
    y0_raw: int
    y1_raw: int
    x_det: int
    y0_det: int
    y1_det: int
    value: float

    @property
    def npix(self) -> int:
        """Number of pixels covered."""
        return self.y1_raw - self.y0_raw + 1


@dataclass
class DetectorTruth:
    """Truth of one detector.

    Attributes
    ----------
    det_name : `str`
        Detector name.
    det_id : `int`
        Detector id.
    vendor : `str`
        ``ITL`` or ``E2V``.
    lsst_num : `str`
        LSST_NUM of the CCD.
    seed : `int`
        Run seed.
    amps : `list` [`AmpTruth`]
        Amplifiers in HDU order.
    defects : `list` [`Defect`]
        Injected defects.
    ccd_drift_amp, ccd_drift_period, ccd_drift_phase : `float`
        CCD-wide part of the bias drift (adu, s, rad), common to all amps.
    gradient : `tuple` [`float`, `float`, `float`]
        Illumination/response gradient ``(gx, gy, gr)``: ``1 + gx X + gy Y + gr (X^2 + Y^2)``,
        X, Y in [-1, 1] across the assembled CCD (renormalised to mean 1 per amplifier).
    """

    det_name: str
    det_id: int
    vendor: str
    lsst_num: str
    seed: int
    amps: list[AmpTruth]
    defects: list[Defect]
    ccd_drift_amp: float
    ccd_drift_period: float
    ccd_drift_phase: float
    gradient: tuple[float, float, float]

    @property
    def name(self) -> str:
        """Detector name (same as ``det_name``)."""
        return self.det_name

    @property
    def detector(self) -> DetectorInfo:
        """Camera description of the detector."""
        return get_camera()[self.det_name]

    def amp(self, name: str) -> AmpTruth:
        """Truth of amplifier ``name``."""
        for a in self.amps:
            if a.amp == name:
                return a
        raise KeyError(f"No amplifier {name!r} in {self.det_name}")

    def amp_defects(self, name: str, kinds: Sequence[str] | None = None) -> list[Defect]:
        """Defects of one amplifier (optionally of the given kinds)."""
        return [d for d in self.defects if d.amp == name and (kinds is None or d.kind in kinds)]

    def bias_drift(self, amp: AmpTruth, t: float) -> float:
        """Deterministic part of the bias drift (adu) at ``t`` s after the plan start."""
        return self.ccd_drift_amp * math.sin(
            2 * math.pi * t / self.ccd_drift_period + self.ccd_drift_phase
        ) + amp.bias_drift_amp * math.sin(2 * math.pi * t / amp.bias_drift_period + amp.bias_drift_phase)


@dataclass(frozen=True)
class ExposureTruth:
    """Detector-independent truth of one exposure.

    Attributes
    ----------
    flux_factor : `float`
        Actual source flux / nominal flux (source jitter).
    ccobflux : `float` or `None`
        Monitoring-photodiode flux written to CCOBFLUX (proportional to the actual flux).
    temp_led1, temp_led2, temp_board : `float`
        LED and board temperatures (C) for the header.
    """

    flux_factor: float
    ccobflux: float | None
    temp_led1: float
    temp_led2: float
    temp_board: float


@dataclass(frozen=True)
class ExposureAmpTruth:
    """Per exposure and amplifier truth.

    Attributes
    ----------
    bias_drift : `float`
        Bias offset of this exposure relative to ``bias_level``, adu.
    gain : `float`
        Effective gain of this exposure, e-/adu (includes the stability drift).
    photo_e : `float`
        Mean photo-charge, e-/pixel (flux x exptime x flux factor x LED response).
    dark_e : `float`
        Mean dark charge, e-/pixel (dark current x dark time; defects excluded).
    persistence_e : `float`
        Mean persistent charge released during the exposure, e-/pixel.
    """

    bias_drift: float
    gain: float
    photo_e: float
    dark_e: float
    persistence_e: float

    @property
    def signal_e(self) -> float:
        """Mean total charge, e-/pixel, before saturation."""
        return self.photo_e + self.dark_e + self.persistence_e


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


@functools.cache
def load_amp_csv() -> dict[tuple[str, str], dict[str, Any]]:
    """Per-amplifier gain, read noise, saturation and LSST_NUM of the real camera, by (det, amp)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with open(package_data("lsstcam_amps.csv")) as f:
        for row in csv.DictReader(f):
            out[(f"{row['raft']}_{row['slot']}", row["amp"])] = {
                "lsst_num": row["lsst_num"],
                "gain": float(row["gain"]),
                "read_noise": float(row["read_noise"]),
                "saturation": float(row["saturation"]),
            }
    return out


def _lognormal(rng: np.random.Generator, median_sigma: tuple[float, float]) -> float:
    median, sigma = median_sigma
    return float(median * math.exp(sigma * rng.standard_normal()))


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _a_matrix(a00: float, a10: float, a01: float, size: int = A_MATRIX_SIZE) -> np.ndarray:
    """a_ij with the given centre and neighbours and a power-law tail making the sum zero."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    r = np.hypot(i, j)
    # multiplicity of each (|i|, |j|) in the full symmetric lag plane
    mult = np.where(i > 0, 2, 1) * np.where(j > 0, 2, 1)
    tail = np.zeros((size, size))
    mask = r > 1.01
    tail[mask] = r[mask] ** -2.5
    remaining = -(a00 + 2 * a10 + 2 * a01)
    tail *= remaining / float(np.sum(tail * mult))
    a = tail
    a[0, 0] = a00
    a[1, 0] = a10
    a[0, 1] = a01
    return a


def _derived_turnoffs(amp: AmpTruth, ratio: float) -> None:
    """Fill the derived turnoff fields of an amplifier."""
    s_lin = ratio * amp.full_well
    amp.linearity_turnoff_adu = float(s_lin * (1.0 - 0.01) / amp.gain)
    amp.ptc_turnoff_adu = float(amp.full_well / amp.gain)
    p, beta = amp.nl_power, amp.nl_beta
    # (1 - (p + 1) beta x^p)^2 = 0.98
    xp = (1.0 - math.sqrt(0.98)) / ((p + 1) * beta)
    s = amp.full_well * min(1.0, xp ** (1.0 / p))
    amp.ptc_turnoff_unlinearized_adu = float(s * (1.0 - beta * (s / amp.full_well) ** p) / amp.gain)


def _saturation_onset_adu(
    det: DetectorInfo, amp: AmpTruth, gradient: tuple[float, float, float], seed: int, k: int
) -> float:
    """Mean signal (adu) at which 1% of the pixels of a flat reach the full well.

    The pixel charge is ``mu * response * (1 + shot)``: the response map's large-scale part
    (gradient renormalised per amplifier, divisadero) is evaluated on a grid every 4 pixels, its
    pixel non-uniformity (red LED) and the shot noise at full well are drawn as Gaussians with a
    fixed stream; the 99th percentile q of the relative charge gives ``full_well / (gain q)``.
    """
    ccd = det.ccd_type
    layout = ccd.amp(amp.amp)
    d = layout.raw.data_bbox
    ny, nx = d.y.stop - d.y.start, d.x.stop - d.x.start
    det_ny, det_nx = ccd.shape
    dx = np.arange(0, nx, 4)
    dy = np.arange(0, ny, 4)
    b = layout.bbox
    x_det = b.x.start + (nx - 1 - dx if layout.flip_x else dx)
    y_det = b.y.start + (ny - 1 - dy if layout.flip_y else dy)
    u = (x_det + 0.5) / det_nx * 2.0 - 1.0
    v = (y_det + 0.5) / det_ny * 2.0 - 1.0
    gx, gy, gr = gradient
    grad = 1.0 + gx * u[None, :] + gy * v[:, None] + gr * (u[None, :] ** 2 + v[:, None] ** 2)
    grad /= grad.mean()
    w = amp.divisadero_width
    div = (1.0 + amp.divisadero_left * np.exp(-(x_det - b.x.start) / w)
           + amp.divisadero_right * np.exp(-(b.x.stop - 1 - x_det) / w))  # fmt: skip
    response = grad * div[None, :]
    rng = np.random.default_rng(np.random.SeedSequence([seed, det.id, 7, k]))
    sigma = math.hypot(amp.prnu_rms, 1.0 / math.sqrt(amp.full_well))
    charge = response * (1.0 + sigma * rng.standard_normal(response.shape))
    return float(amp.full_well / (amp.gain * np.percentile(charge, 99.0)))


def _raw_to_det(layout: AmpLayout, x_raw: int, y_raw: int) -> tuple[int, int]:
    """Map a raw data pixel to the trimmed, assembled detector."""
    data = layout.raw.data_bbox
    nx, ny = data.x.stop - data.x.start, data.y.stop - data.y.start
    dx, dy = x_raw - data.x.start, y_raw - data.y.start
    bbox = layout.bbox
    x = bbox.x.start + (nx - 1 - dx if layout.flip_x else dx)
    y = bbox.y.start + (ny - 1 - dy if layout.flip_y else dy)
    return int(x), int(y)


def _draw_defects(
    rng: np.random.Generator, det: DetectorInfo, vm: VendorModel, amp_names: Sequence[str]
) -> list[Defect]:
    """Draw the defects of a detector (positions avoid each other and the detector edges)."""
    ccd = det.ccd_type
    det_ny, det_nx = ccd.shape
    edge = _DETECTOR_EDGE_EXCLUSION
    defects: list[Defect] = []
    for name in amp_names:
        layout = ccd.amp(name)
        data = layout.raw.data_bbox
        x0, x1, y0, y1 = data.x.start, data.x.stop, data.y.start, data.y.stop
        # raw columns / rows allowed by the detector-edge exclusion
        xd0, yd0 = _raw_to_det(layout, x0, y0)
        xd = xd0 + (-1 if layout.flip_x else 1) * np.arange(x1 - x0)
        yd = yd0 + (-1 if layout.flip_y else 1) * np.arange(y1 - y0)
        xs = [int(x) for x in np.arange(x0, x1)[(xd >= edge) & (xd < det_nx - edge)]]
        ys = np.arange(y0, y1)[(yd >= edge) & (yd < det_ny - edge)]
        ymin, ymax = int(ys.min()), int(ys.max())
        busy_cols: set[int] = set()
        busy_pix: set[tuple[int, int]] = set()

        def add(kind: str, x: int, ya: int, yb: int, value: float, _layout=layout, _name=name) -> None:
            xd, yda = _raw_to_det(_layout, x, ya)
            _, ydb = _raw_to_det(_layout, x, yb)
            defects.append(
                Defect(det.name, _name, kind, x, ya, yb, xd, min(yda, ydb), max(yda, ydb), float(value))
            )

        for kind, mean, rate in (
            ("bright_column", vm.bright_columns_per_amp, vm.bright_column_rate),
            ("dark_column", vm.dark_columns_per_amp, vm.dark_factor),
        ):
            for _ in range(int(rng.poisson(mean))):
                free = [x for x in xs if all(abs(x - c) > 2 for c in busy_cols)]
                x = int(rng.choice(free))
                busy_cols.add(x)
                if rng.uniform() < 0.5:  # full column
                    ya, yb = y0, y1 - 1
                else:  # partial: from a defect at row ya to the far end of the column
                    ya, yb = int(rng.integers(y0 + 100, y1 - 200)), y1 - 1
                value = math.exp(rng.uniform(math.log(rate[0]), math.log(rate[1])))
                if kind == "dark_column":
                    value = rng.uniform(*rate)
                add(kind, x, ya, yb, value)
        for kind, mean, rate in (
            ("hot_pixel", vm.hot_pixels_per_amp, vm.hot_rate),
            ("dark_pixel", vm.dark_pixels_per_amp, vm.dark_factor),
        ):
            n = int(rng.poisson(mean))
            placed = 0
            while placed < n:
                x = int(rng.choice(xs))
                y = int(rng.integers(ymin, ymax + 1))
                if any(abs(x - c) <= 2 for c in busy_cols) or any(
                    (x + i, y + j) in busy_pix for i in (-1, 0, 1) for j in (-1, 0, 1)
                ):
                    continue
                busy_pix.add((x, y))
                if kind == "hot_pixel":
                    value = math.exp(rng.uniform(math.log(rate[0]), math.log(rate[1])))
                else:
                    value = rng.uniform(*rate)
                add(kind, x, y, y, value)
                placed += 1
    return defects


def draw_detector_truth(detector: DetectorInfo | str | int, seed: int) -> DetectorTruth:
    """Draw the truth of one detector.

    Gains, read noises and LSST_NUM come from the real camera (``lsstcam_amps.csv``); everything
    else is drawn from the vendor's `VendorModel`.  The stream is ``SeedSequence([seed, det_id])``.

    Parameters
    ----------
    detector : `~lsst.eo.baseline.camera.DetectorInfo`, `str` or `int`
        Detector (object, name or id).
    seed : `int`
        Run seed.

    Returns
    -------
    truth : `DetectorTruth`
        The detector's truth.
    """
    det = detector if isinstance(detector, DetectorInfo) else get_camera()[detector]
    return _draw_detector_truth_cached(det.name, int(seed))


@functools.lru_cache(maxsize=32)
def _draw_detector_truth_cached(det_name: str, seed: int) -> DetectorTruth:
    det = get_camera()[det_name]
    vm = vendor_model(det.vendor)
    rng = np.random.default_rng(np.random.SeedSequence([seed, det.id]))
    table = load_amp_csv()
    amp_names = det.amp_names
    n_amps = len(amp_names)
    ccd_drift = (
        _uniform(rng, vm.ccd_drift_amp),
        _uniform(rng, vm.ccd_drift_period),
        rng.uniform(0, 2 * np.pi),
    )
    gradient = (
        float(rng.normal(0.0, 0.004)),
        float(rng.normal(0.0, 0.004)),
        float(rng.uniform(-0.008, -0.002)),
    )
    det_led = {led: float(1.0 + 0.02 * rng.standard_normal()) for led in LEDS}
    high_serial = set(
        rng.choice(n_amps, size=int(rng.integers(*vm.n_high_serial_cti, endpoint=True)), replace=False)
    )
    high_parallel = set(
        rng.choice(n_amps, size=int(rng.integers(*vm.n_high_parallel_cti, endpoint=True)), replace=False)
    )
    amps: list[AmpTruth] = []
    for k, name in enumerate(amp_names):
        real = table.get((det.name, name))
        if real is None:
            raise KeyError(f"{det.name} {name} is not in lsstcam_amps.csv")
        # The camera model's gains (CSV) come from earlier EO tests: the true gain differs from them
        # by ~1% rms, so an analysis using nominal gains is wrong by that much, as in the lab.
        gain = float(real["gain"] * (1.0 + np.clip(0.01 * rng.standard_normal(), -0.025, 0.025)))
        full_well = float(np.clip(rng.normal(*vm.full_well), *vm.full_well_range))
        if 0.95 * real["saturation"] * gain < full_well:  # pathological low-saturation amplifier
            full_well = 0.95 * real["saturation"] * gain
        ratio = _uniform(rng, vm.nl_turnoff_ratio)
        power = int(rng.integers(vm.nl_power[0], vm.nl_power[1], endpoint=True))
        a00 = float(np.clip(rng.normal(*vm.a00), *vm.a00_range))
        a10 = abs(a00) * _uniform(rng, vm.a10_ratio)
        a01 = abs(a00) * _uniform(rng, vm.a01_ratio)

        def cti(median_sigma: tuple[float, float], high: bool) -> float:
            if high:
                return float(math.exp(rng.uniform(math.log(vm.high_cti[0]), math.log(vm.high_cti[1]))))
            return float(np.clip(_lognormal(rng, median_sigma), 1e-7, 4.5e-6))

        serial_cti = cti(vm.serial_cti, k in high_serial)
        parallel_cti = cti(vm.parallel_cti, k in high_parallel)
        div = []
        for _ in range(2):
            mag = _uniform(rng, vm.divisadero) if vm.divisadero[1] > 0 else 0.0
            div.append(mag * (1.0 if rng.uniform() < 0.5 else -1.0))
        amp = AmpTruth(
            det_name=det.name,
            det_id=det.id,
            amp=name,
            amp_index=k,
            vendor=det.vendor,
            lsst_num=real["lsst_num"],
            gain=gain,
            read_noise=real["read_noise"],
            bias_level=round(_uniform(rng, vm.bias_level), 2),
            bias_ramp=_uniform(rng, vm.bias_ramp),
            bias_ramp_scale=_uniform(rng, vm.bias_ramp_scale),
            bias_row_noise=_uniform(rng, vm.bias_row_noise),
            bias_col_rms=_uniform(rng, vm.bias_col_rms),
            bias_drift_amp=_uniform(rng, vm.bias_drift_amp),
            bias_drift_period=_uniform(rng, vm.bias_drift_period),
            bias_drift_phase=float(rng.uniform(0, 2 * np.pi)),
            dark_current=_lognormal(rng, vm.dark_current),
            full_well=full_well,
            nl_beta=0.01 / ratio**power,
            nl_power=power,
            linearity_turnoff_adu=0.0,
            ptc_turnoff_adu=0.0,
            ptc_turnoff_unlinearized_adu=0.0,
            ptc_turnoff_onset_adu=0.0,
            a00=a00,
            a01=a01,
            a10=a10,
            serial_cti=serial_cti,
            parallel_cti=parallel_cti,
            divisadero_left=div[0],
            divisadero_right=div[1],
            divisadero_width=1.0,
            divisadero_tearing=0.0,
            gain_drift=_uniform(rng, vm.gain_drift) * (1.0 if rng.uniform() < 0.5 else -1.0),
            persistence_q0=_lognormal(rng, vm.persistence_q0),
            persistence_tau=_uniform(rng, vm.persistence_tau),
            prnu_rms=_uniform(rng, vm.prnu_rms),
            led_response={
                led: float(vm.led_response[led] * det_led[led] * (1.0 + 0.01 * rng.standard_normal()))
                for led in LEDS
            },
            a_matrix=_a_matrix(a00, a10, a01),
        )
        _derived_turnoffs(amp, ratio)
        amps.append(amp)
    _fix_divisadero(det, amps)
    for k, amp in enumerate(amps):
        amp.ptc_turnoff_onset_adu = _saturation_onset_adu(det, amp, gradient, seed, k)
    defects = _draw_defects(rng, det, vm, amp_names)
    return DetectorTruth(
        det_name=det.name,
        det_id=det.id,
        vendor=det.vendor,
        lsst_num=amps[0].lsst_num,
        seed=seed,
        amps=amps,
        defects=defects,
        ccd_drift_amp=ccd_drift[0],
        ccd_drift_period=ccd_drift[1],
        ccd_drift_phase=float(ccd_drift[2]),
        gradient=gradient,
    )


def _fix_divisadero(det: DetectorInfo, amps: list[AmpTruth]) -> None:
    """Zero the divisadero amplitude at CCD edges and derive eo_pipe's per-amp maximum."""
    ccd = det.ccd_type
    nx = 1 + max(a.ix for a in ccd.amps)
    by_pos = {(ccd.amp(a.amp).ix, ccd.amp(a.amp).iy): a for a in amps}
    for a in amps:
        lay = ccd.amp(a.amp)
        if lay.ix == 0:
            a.divisadero_left = 0.0
        if lay.ix == nx - 1:
            a.divisadero_right = 0.0
    for a in amps:
        lay = ccd.amp(a.amp)
        worst = 0.0
        left = by_pos.get((lay.ix - 1, lay.iy))
        right = by_pos.get((lay.ix + 1, lay.iy))
        if left is not None:
            worst = max(worst, abs(a.divisadero_left), abs(left.divisadero_right))
        if right is not None:
            worst = max(worst, abs(a.divisadero_right), abs(right.divisadero_left))
        a.divisadero_tearing = worst


def draw_exposure_truth(exposure: ExposureSpec, seed: int) -> ExposureTruth:
    """Detector-independent truth of an exposure (stream ``[seed, DAYOBS, SEQNUM]``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), exposure.day_obs, exposure.seq_num]))
    factor = float(1.0 + 0.003 * rng.standard_normal()) if exposure.has_light else 1.0
    ccobflux = round(exposure.flux * factor * 10.0, 2) if exposure.has_light else None
    return ExposureTruth(
        flux_factor=factor,
        ccobflux=ccobflux,
        temp_led1=round(float(35.0 + 0.2 * rng.standard_normal()), 4),
        temp_led2=round(float(34.3 + 0.2 * rng.standard_normal()), 4),
        temp_board=round(float(38.5 + 0.2 * rng.standard_normal()), 4),
    )


def exposure_amp_truths(
    truth: DetectorTruth,
    exposures: Sequence[ExposureSpec],
    exposure_truths: Sequence[ExposureTruth],
    seed: int,
) -> list[list[ExposureAmpTruth]]:
    """Per exposure and amplifier truth of one detector over a whole plan.

    Persistence follows a trap model: an exposure whose mean charge exceeds the full well fills the
    traps with ``persistence_q0`` e-/pixel at its DATE-END ``t_s``; they empty with time constant
    ``tau``, so an exposure integrating from ``t_beg`` to ``t_end`` collects
    ``q0 (exp(-(t_beg - t_s)/tau) - exp(-(t_end - t_s)/tau))``.  Only the latest saturating
    exposure counts (a new saturation refills the traps).

    Returns
    -------
    states : `list` [`list` [`ExposureAmpTruth`]]
        ``states[exposure][amp]`` in plan and HDU order.
    """
    last_sat: list[float | None] = [None] * len(truth.amps)
    out: list[list[ExposureAmpTruth]] = []
    for exp, etruth in zip(exposures, exposure_truths, strict=True):
        rng = np.random.default_rng(
            np.random.SeedSequence([int(seed), truth.det_id, exp.day_obs, exp.seq_num, 1])
        )
        jitter = rng.standard_normal(len(truth.amps))
        vm = vendor_model(truth.vendor)
        row: list[ExposureAmpTruth] = []
        for k, amp in enumerate(truth.amps):
            photo = (
                exp.flux * exp.exptime * etruth.flux_factor * amp.led_response[exp.led]
                if exp.has_light
                else 0.0
            )
            dark = amp.dark_current * exp.darktime
            pers = 0.0
            ts = last_sat[k]
            if ts is not None:
                tau = amp.persistence_tau
                pers = amp.persistence_q0 * (
                    math.exp(-(exp.t_beg - ts) / tau) - math.exp(-(exp.t_end - ts) / tau)
                )
            gain = amp.gain * (1.0 + amp.gain_drift * exp.stability_phase)
            drift = truth.bias_drift(amp, exp.t_beg) + vm.bias_jitter * float(jitter[k])
            row.append(ExposureAmpTruth(round(drift, 4), gain, photo, dark, pers))
            if photo + dark > amp.full_well:
                last_sat[k] = exp.t_end
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

_AMP_SCALARS = [f.name for f in fields(AmpTruth) if f.name not in ("led_response", "a_matrix")]


def amp_table_row(amp: AmpTruth) -> dict[str, Any]:
    """Flatten an `AmpTruth` into a table row (``led_response_<led>`` columns, ``a_matrix``)."""
    row = {name: getattr(amp, name) for name in _AMP_SCALARS}
    for led in LEDS:
        row[f"led_response_{led}"] = amp.led_response[led]
    row["a_matrix"] = np.asarray(amp.a_matrix, dtype=np.float64)
    return row


def amp_truth_from_row(row: Any) -> AmpTruth:
    """Rebuild an `AmpTruth` from a row of the amps table."""
    kwargs: dict[str, Any] = {}
    for f in fields(AmpTruth):
        if f.name in ("led_response", "a_matrix"):
            continue
        value = row[f.name]
        kwargs[f.name] = value.item() if hasattr(value, "item") else value
        if f.type in ("str",):
            kwargs[f.name] = str(kwargs[f.name])
    kwargs["nl_power"] = int(kwargs["nl_power"])
    kwargs["led_response"] = {led: float(row[f"led_response_{led}"]) for led in LEDS}
    kwargs["a_matrix"] = np.array(row["a_matrix"], dtype=np.float64)
    return AmpTruth(**kwargs)


_DETECTOR_COLUMNS = [
    "det_name",
    "det_id",
    "vendor",
    "lsst_num",
    "ccd_drift_amp",
    "ccd_drift_period",
    "ccd_drift_phase",
]


def detectors_table(truths: Sequence[DetectorTruth]) -> Table:
    """Per-detector truth table."""
    rows = []
    for t in truths:
        row = {c: getattr(t, c) for c in _DETECTOR_COLUMNS}
        row.update(gradient_x=t.gradient[0], gradient_y=t.gradient[1], gradient_r2=t.gradient[2])
        rows.append(row)
    return Table(rows=rows)


def defects_table(truth: DetectorTruth) -> Table:
    """Defects of a detector as a table (one row per defect)."""
    names = [f.name for f in fields(Defect)]
    if not truth.defects:
        return Table(names=names, dtype=[str, str, str, int, int, int, int, int, int, float])
    return Table(rows=[asdict(d) for d in truth.defects], names=names)


@dataclass
class SimulationTruth:
    """Truth of a simulated run, as read back by `load_truth`.

    Attributes
    ----------
    out_dir : `str`
        Output directory of the run.
    index : `dict`
        Content of ``truth.yaml``.
    amps : `astropy.table.Table`
        Per detector and amplifier parameters (columns = `AmpTruth` fields, ``led_response_<led>``,
        ``a_matrix``).
    detector_table : `astropy.table.Table`
        Per-detector parameters.
    detectors : `~collections.abc.Mapping` [`str`, `DetectorTruth`]
        Detector truths by name, built from the tables on first access.
    exposures : `astropy.table.Table`
        Per-exposure (detector-independent) values.
    files : `astropy.table.Table`
        Raw files written (det_name, exposure_id, path relative to ``out_dir``).
    """

    out_dir: str
    index: dict[str, Any]
    amps: Table
    detector_table: Table
    exposures: Table
    files: Table
    detectors: Mapping[str, DetectorTruth] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.detectors = _DetectorMap(self)

    def _path(self, rel: str) -> str:
        return os.path.join(self.out_dir, rel)

    def exposure_amps(self, det_name: str) -> Table:
        """Per exposure and amplifier truth of one detector (`ExposureAmpTruth` columns)."""
        return Table.read(self._path(self.index["tables"]["exposure_amps"][det_name]), format="ascii.ecsv")

    def defects(self, det_name: str) -> Table:
        """Injected defects of one detector (`Defect` columns)."""
        return Table.read(self._path(self.index["tables"]["defects"][det_name]), format="ascii.ecsv")

    def amp(self, det_name: str, amp: str) -> AmpTruth:
        """`AmpTruth` of one amplifier."""
        sel = (self.amps["det_name"] == det_name) & (self.amps["amp"] == amp)
        rows = self.amps[sel]
        if len(rows) != 1:
            raise KeyError(f"No truth for {det_name} {amp}")
        return amp_truth_from_row(rows[0])

    def detector(self, det_name: str) -> DetectorTruth:
        """`DetectorTruth` of one detector, rebuilt from the tables."""
        row = self.detector_table[self.detector_table["det_name"] == det_name][0]
        amps = [amp_truth_from_row(r) for r in self.amps[self.amps["det_name"] == det_name]]
        amps.sort(key=lambda a: a.amp_index)
        defects = [
            Defect(
                str(r["det_name"]), str(r["amp"]), str(r["kind"]), *(int(r[c]) for c in
                ("x_raw", "y0_raw", "y1_raw", "x_det", "y0_det", "y1_det")), float(r["value"])
            )
            for r in self.defects(det_name)
        ]  # fmt: skip
        return DetectorTruth(
            det_name=det_name,
            det_id=int(row["det_id"]),
            vendor=str(row["vendor"]),
            lsst_num=str(row["lsst_num"]),
            seed=int(self.index["seed"]),
            amps=amps,
            defects=defects,
            ccd_drift_amp=float(row["ccd_drift_amp"]),
            ccd_drift_period=float(row["ccd_drift_period"]),
            ccd_drift_phase=float(row["ccd_drift_phase"]),
            gradient=(float(row["gradient_x"]), float(row["gradient_y"]), float(row["gradient_r2"])),
        )


class _DetectorMap(Mapping[str, DetectorTruth]):
    """Lazy mapping detector name -> `DetectorTruth` of a `SimulationTruth`."""

    def __init__(self, truth: SimulationTruth):
        self._truth = truth
        self._names = [str(n) for n in truth.index["detectors"]]
        self._cache: dict[str, DetectorTruth] = {}

    def __getitem__(self, name: str) -> DetectorTruth:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = self._truth.detector(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def load_truth(out_dir: str) -> SimulationTruth:
    """Read the truth of a simulated run from its output directory (``truth.yaml`` + ECSV tables)."""
    with open(os.path.join(out_dir, "truth.yaml")) as f:
        index = yaml.safe_load(f)
    tables = index["tables"]

    def read(rel: str) -> Table:
        return Table.read(os.path.join(out_dir, rel), format="ascii.ecsv")

    return SimulationTruth(
        out_dir=os.path.abspath(out_dir),
        index=index,
        amps=read(tables["amps"]),
        detector_table=read(tables["detectors"]),
        exposures=read(tables["exposures"]),
        files=read(tables["files"]),
    )

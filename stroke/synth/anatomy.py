"""The phantom's anatomy in Hounsfield units: a 3-D head (skull, scalp, cortex, white
matter, ventricles, sulci) sampled on an axial plane, and the scanner's noise and blur.

Every layout draws its patients from it: the PNG slices (stroke.synth.phantom), the
RSNA-style DICOM series with hemorrhage subtypes (stroke.synth.series, .subtypes) and the
3-D scans with lesion label volumes (stroke.synth.volumes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from stroke.data.windowing import WINDOW_PRESETS, window_hu

AIR_HU, BONE_HU, SCALP_HU, CSF_HU = -1000.0, 1000.0, 20.0, 6.0


@dataclass
class Plane:
    """One axial slice: brain-normalised coordinates as affine maps of the pixel axes.

    Keeping the maps affine lets smooth fields be evaluated as an outer product of 1-D
    waves, which is what keeps generation fast.
    """

    x: np.ndarray  # (W,) pixel-centre abscissae in image half-widths
    y: np.ndarray  # (H,)
    u_map: tuple[float, float, float]  # lateral coordinate = c + cx * x + cy * y
    v_map: tuple[float, float, float]  # antero-posterior coordinate, same form
    z: float

    @cached_property
    def u(self) -> np.ndarray:
        """Lateral brain coordinate of every pixel (about 1 at the inner skull table)."""
        return self.u_map[0] + self.u_map[1] * self.x[None, :] + self.u_map[2] * self.y[:, None]

    @cached_property
    def v(self) -> np.ndarray:
        """Antero-posterior brain coordinate of every pixel (negative is anterior)."""
        return self.v_map[0] + self.v_map[1] * self.x[None, :] + self.v_map[2] * self.y[:, None]

    @cached_property
    def theta(self) -> np.ndarray:
        """Polar angle of every pixel in brain coordinates (0 points to the patient's left)."""
        return np.arctan2(self.v, self.u)

    @cached_property
    def radius(self) -> np.ndarray:
        """Elliptical distance from the brain centre (about 1 at the inner skull table)."""
        return np.sqrt(self.u**2 + self.v**2)


class SmoothField:
    """Random 3-D field of a few low-frequency plane waves, roughly unit variance."""

    def __init__(self, rng: np.random.Generator, n_waves: int, frequency: float) -> None:
        self.freqs = rng.normal(0.0, frequency, (n_waves, 3)).astype(np.float32)
        self.phases = rng.uniform(0.0, 2 * np.pi, n_waves).astype(np.float32)

    def __call__(self, plane: Plane) -> np.ndarray:
        fu, fv, fz = self.freqs.T
        (u0, ux, uy), (v0, vx, vy) = plane.u_map, plane.v_map
        offset = fu * u0 + fv * v0 + fz * plane.z + self.phases
        along_x = np.outer(fu * ux + fv * vx, plane.x)
        along_y = np.outer(fu * uy + fv * vy, plane.y) + offset[:, None]
        # cos(a + b) = cos a cos b - sin a sin b; einsum rather than BLAS keeps it
        # single-threaded and bit-reproducible across machines.
        total = np.einsum("ky,kx->yx", np.cos(along_y), np.cos(along_x))
        total -= np.einsum("ky,kx->yx", np.sin(along_y), np.sin(along_x))
        return math.sqrt(2.0 / len(self.phases)) * total


class Head:
    """One patient's anatomy and scanner settings; every class draws them the same way."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.semi_axes = (rng.uniform(0.68, 0.80), rng.uniform(0.84, 0.94))  # image half-widths
        self.centre = (rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05))
        self.rotation = rng.uniform(-0.2, 0.2)
        self.skull = rng.uniform(0.035, 0.065)
        self.egg = rng.uniform(0.0, 0.12)  # how much wider the back of the head is
        self.scalp = rng.uniform(0.015, 0.035)
        self.grey_hu = rng.uniform(34.0, 42.0)
        self.white_hu = self.grey_hu - rng.uniform(6.0, 10.0)
        self.atrophy = rng.uniform(0.0, 1.0)  # widens ventricles, sulci and the CSF rim
        self.noise_hu = rng.uniform(2.0, 5.0)
        self.blur = rng.uniform(0.55, 0.9)  # Gaussian sigma in pixels at 128 px
        self.texture = SmoothField(rng, 10, 4.0)
        self.gyri = SmoothField(rng, 8, 6.0)
        self.sulcus_wobble = SmoothField(rng, 10, 9.0)
        self.n_sulci = int(rng.integers(16, 26))
        self.sulcus_phase = rng.uniform(0, 2 * np.pi)
        # Centre and half-thickness of the z range the slices sample (z = 1 is the vertex).
        self.slab = (rng.uniform(-0.2, 0.35), rng.uniform(0.12, 0.3))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Draw from a log-uniform law, so small and large values are equally common."""
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def ventricle_mask(plane: Plane, head: Head) -> np.ndarray:
    """Lateral ventricles (and the third ventricle low down) as a boolean CSF map."""
    u, v, z = plane.u, plane.v, plane.z
    size = (0.75 + 0.6 * head.atrophy) * math.exp(-(((z - 0.1) / 0.45) ** 2))
    csf = np.zeros(u.shape, dtype=bool)
    if size > 0.2:
        # Each ventricle is a band bowing outwards at both ends: frontal horn in front, atrium
        # behind; the horns flare more and the bodies shorten higher up.
        half_length = 0.2 + 0.16 * size
        along = (v + 0.02) / half_length
        flare = 0.11 + 0.08 * np.clip(0.2 - z, 0.0, 0.6)
        frontal_horn = np.clip(1.0 - ((along + 0.65) / 0.45) ** 2, 0.0, None) ** 2
        atrium = np.clip(1.0 - ((along - 0.6) / 0.45) ** 2, 0.0, None) ** 2
        width = size * (0.03 + 0.035 * frontal_horn + 0.045 * atrium)
        width = width * np.sqrt(np.clip(1.0 - along**4, 0.0, None))
        centreline = 0.045 + 0.02 * size + flare * along**2 * half_length
        csf = (np.abs(np.abs(u) - centreline) < width) & (np.abs(u) > 0.012)
    if z < 0.0:
        csf |= (np.abs(u) < 0.01 + 0.01 * head.atrophy) & (np.abs(v + 0.04) < 0.1)
    return csf


def slice_plane(
    head: Head, z: float, axis: np.ndarray, rows: np.ndarray | None = None
) -> tuple[Plane, float, float]:
    """Brain coordinates of the slice at level z, with the head's in-plane size there.

    `axis` holds the columns' centres in image half-widths, `rows` the rows' (default: the
    same), so a grid whose pixels are not square still draws the head in proportion.
    """
    level = math.sqrt(max(1.0 - z * z, 0.05))
    lateral, ap = head.semi_axes[0] * level, head.semi_axes[1] * level
    inner = 1.0 - head.skull / (0.5 * (lateral + ap))
    c, s = math.cos(head.rotation), math.sin(head.rotation)
    cx, cy = head.centre
    ku, kv = lateral * inner, ap * inner
    plane = Plane(
        x=axis,
        y=axis if rows is None else rows,
        u_map=(float((-c * cx - s * cy) / ku), float(c / ku), float(s / ku)),
        v_map=(float((s * cx - c * cy) / kv), float(-s / kv), float(c / kv)),
        z=z,
    )
    return plane, inner, 0.5 * (lateral + ap)


@dataclass
class Anatomy:
    """One slice's anatomy in HU, before lesions, noise and blur, with the maps lesions need."""

    plane: Plane
    hu: np.ndarray  # air, scalp, bone, tissue and CSF
    tissue: np.ndarray  # grey and white matter as if there were no CSF
    rb: np.ndarray  # 1 on the inner skull table, below 1 inside it
    brain: np.ndarray  # inside the inner table
    sulcus_line: np.ndarray  # near 1 on a sulcus' centre line
    sulcus_depth: np.ndarray  # how far (in rb) sulci reach in from the inner table
    cisterns: np.ndarray  # the CSF rim, the interhemispheric fissure and the ventricles
    ventricles: np.ndarray
    csf_fraction: np.ndarray  # 0 in tissue, 1 in CSF

    @property
    def parenchyma(self) -> np.ndarray:
        """Brain pixels that are mostly tissue, not CSF."""
        return self.brain & (self.csf_fraction < 0.5)


def render_anatomy(
    head: Head, z: float, axis: np.ndarray, rows: np.ndarray | None = None
) -> Anatomy:
    """The head at level z in HU: skull, scalp, cortex and white matter, sulci and CSF."""
    plane, inner, radius = slice_plane(head, z, axis, rows)
    u, v, theta = plane.u, plane.v, plane.theta
    # rho is 1 on the outer skull table; the egg factor widens the back of the head.
    rho = inner * np.sqrt((u / (1.0 + head.egg * np.clip(v * inner, -1, 1))) ** 2 + v**2)
    skull = head.skull * (1.0 + 0.3 * np.sin(theta) ** 2) / radius
    rb = rho / (1.0 - skull)  # 1 on the inner skull table

    hu = np.full(u.shape, AIR_HU, dtype=np.float32)
    hu[rho < 1.0 + head.scalp / radius] = SCALP_HU
    hu[rho < 1.0] = BONE_HU
    brain = rb < 1.0

    # Sulci: wobbly radial clefts of CSF, lined with cortex, deeper and wider with atrophy.
    wobble = head.sulcus_wobble(plane)
    sulcus_line = np.cos(head.n_sulci * theta + head.sulcus_phase + 1.6 * wobble)
    depth = 0.12 + 0.05 * head.gyri(plane) + 0.06 * head.atrophy
    sulcus_csf = np.clip((sulcus_line - 0.9 + 0.04 * head.atrophy) / 0.08, 0.0, 1.0) * (
        rb > 1.0 - depth
    )
    cortex = (rb > 0.86 + 0.03 * wobble) | ((sulcus_line > 0.75) & (rb > 0.98 - 1.5 * depth))
    deep_grey = (((np.abs(u) - 0.25) / 0.08) ** 2 + ((v + 0.02) / 0.16) ** 2 < 1) & (z < 0.2)
    tissue = head.white_hu + (head.grey_hu - head.white_hu) * (cortex + 0.6 * (deep_grey & ~cortex))
    tissue = tissue + 1.2 * head.texture(plane)

    rim = 0.012 + 0.02 * head.atrophy
    fissure = (np.abs(u) < 0.008 + 0.008 * head.atrophy) & (np.abs(v + 0.05) > 0.45)
    ventricles = ventricle_mask(plane, head)
    cisterns = (rb > 1.0 - rim) | fissure | ventricles
    csf_fraction = np.maximum(sulcus_csf, cisterns)
    hu[brain] = (tissue + csf_fraction * (CSF_HU - tissue))[brain]
    return Anatomy(
        plane, hu, tissue, rb, brain, sulcus_line, depth, cisterns, ventricles, csf_fraction
    )


def acquire(hu: np.ndarray, head: Head, rng: np.random.Generator) -> np.ndarray:
    """What the scanner makes of the HU map: quantum noise, then its point-spread blur."""
    hu += head.noise_hu * rng.standard_normal(hu.shape, dtype=np.float32)
    return gaussian_blur(hu, head.blur * max(hu.shape[0] / 128, 0.5))


def nearest_pixels(margin: np.ndarray, eligible: np.ndarray, count: int) -> np.ndarray:
    """The `count` eligible pixels of highest margin: a lesion's section where it all but ends."""
    candidates = np.where(eligible, margin, -np.inf).ravel()
    nearest = np.argpartition(-candidates, count)[:count]
    region = np.zeros(margin.size, dtype=bool)
    region[nearest] = True
    return region.reshape(margin.shape)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding, standing in for the scanner's PSF."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float32) / sigma) ** 2)
    taps /= taps.sum()
    rows, cols = image.shape
    padded = np.pad(image, radius, mode="edge")
    across = sum(w * padded[:, k : k + cols] for k, w in enumerate(taps))
    return sum(w * across[k : k + rows, :] for k, w in enumerate(taps))


def window_uint8(hu: np.ndarray) -> np.ndarray:
    """Map Hounsfield units through the brain window to 0..255 grey levels."""
    brain = WINDOW_PRESETS["brain"]
    return window_hu(hu, brain.width, brain.level)

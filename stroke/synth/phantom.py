"""Synthetic head-CT phantom: the embedded default dataset, so a fresh clone trains offline.

Each patient is a 3-D head (ellipsoid skull, cortex, white matter, ventricles, sulci)
built in Hounsfield units and sampled at several axial levels; lesion patients carry a
3-D hyperdense haemorrhage or a hypodense arterial-territory infarct that every one of
their slices cuts through. Slices are written in a brain window (W80/L40) as 8-bit PNGs
with a binary lesion mask beside them.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from stroke.data.windowing import WINDOW_PRESETS, window_hu
from stroke.errors import ConfigError
from stroke.io import atomic_write_text, atomic_writer

__all__ = ["KNOWN_CLASSES", "PhantomConfig", "generate_phantom"]

KNOWN_CLASSES: tuple[str, ...] = ("normal", "hemorrhagic", "ischemic")

# Bump when the rendering changes, so folders written by an older generator are not reused.
_GENERATOR_VERSION = 3
#: Share of lesion patients whose lesion is subtle (small or faint): the hard cases.
#: Most acute lesions are plainly visible; a default run must reach high accuracy in
#: minutes on a CPU while a few remain genuinely hard.
SUBTLE_FRACTION = 0.1
_AIR_HU, _BONE_HU, _SCALP_HU, _CSF_HU = -1000.0, 1000.0, 20.0, 6.0
_SLICE_FILE = re.compile(r"^P\d+_s\d+\.png$")


@dataclass(frozen=True)
class PhantomConfig:
    """Size and seed of a phantom dataset; the seed alone fixes every pixel."""

    n_patients: int = 300
    slices_per_patient: int = 3
    image_size: int = 128
    seed: int = 0
    classes: tuple[str, ...] = KNOWN_CLASSES

    def __post_init__(self) -> None:
        # Hydra hands lists (ListConfig); a tuple keeps the config hashable and comparable.
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        unknown = [c for c in self.classes if c not in KNOWN_CLASSES]
        if not self.classes or unknown:
            raise ConfigError(
                f"classes={self.classes!r} contains unknown names {unknown}; "
                f"allowed: a non-empty subset of {KNOWN_CLASSES}."
            )
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(
                f"classes={self.classes!r} has duplicates; allowed: each of {KNOWN_CLASSES} once."
            )
        _require_int("n_patients", self.n_patients, len(self.classes), "the number of classes")
        _require_int("slices_per_patient", self.slices_per_patient, 1)
        _require_int("image_size", self.image_size, 32)
        _require_int("seed", self.seed, 0)


def _require_int(name: str, value: object, minimum: int, what: str = "") -> None:
    """Raise a ConfigError naming `name` unless `value` is an int of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        bound = f"{minimum} ({what})" if what else str(minimum)
        raise ConfigError(f"{name}={value!r} is invalid; allowed: an integer >= {bound}.")


@dataclass
class _Plane:
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


class _SmoothField:
    """Random 3-D field of a few low-frequency plane waves, roughly unit variance."""

    def __init__(self, rng: np.random.Generator, n_waves: int, frequency: float) -> None:
        self.freqs = rng.normal(0.0, frequency, (n_waves, 3)).astype(np.float32)
        self.phases = rng.uniform(0.0, 2 * np.pi, n_waves).astype(np.float32)

    def __call__(self, plane: _Plane) -> np.ndarray:
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


class _Head:
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
        self.texture = _SmoothField(rng, 10, 4.0)
        self.gyri = _SmoothField(rng, 8, 6.0)
        self.sulcus_wobble = _SmoothField(rng, 10, 9.0)
        self.n_sulci = int(rng.integers(16, 26))
        self.sulcus_phase = rng.uniform(0, 2 * np.pi)
        # Centre and half-thickness of the z range the slices sample (z = 1 is the vertex).
        self.slab = (rng.uniform(-0.2, 0.35), rng.uniform(0.12, 0.3))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Draw from a log-uniform law, so small and large values are equally common."""
    return math.exp(rng.uniform(math.log(low), math.log(high)))


class _Hemorrhage:
    """Irregular hyperdense 3-D blob of blood, in brain-normalised coordinates."""

    effaces_sulci = False

    def __init__(self, rng: np.random.Generator, slab: tuple[float, float], first: bool) -> None:
        z0, half = slab
        zc = z0 + rng.uniform(-0.3, 0.3) * half
        # The first blob reaches every slice, its ends only just; a second may reach fewer.
        subtle = rng.random() < SUBTLE_FRACTION
        # A subtle lesion's end slices cut only its tip; a typical one is thick through the slab.
        reach_factor = rng.uniform(1.0, 1.35) if subtle else rng.uniform(1.6, 2.2)
        reach = (half + abs(zc - z0)) * (reach_factor if first else rng.uniform(0.3, 1))
        r, a = rng.uniform(0.2, 0.65), rng.uniform(0, 2 * np.pi)
        size = _log_uniform(rng, 0.05, 0.1) if subtle else rng.uniform(0.1, 0.24)
        self.centre = (r * math.cos(a), r * math.sin(a), zc)
        self.radii = (size, size * rng.uniform(0.6, 1.6), reach)
        self.angle = rng.uniform(0, np.pi)
        self.irregularity = rng.uniform(0.05, 0.25)
        self.shape = _SmoothField(rng, 8, 10.0)
        # over grey matter, the densest tissue; acute blood is ~20-45 HU above it
        self.excess_hu = _log_uniform(rng, 3.0, 12.0) if subtle else rng.uniform(25.0, 45.0)

    def margin(self, plane: _Plane) -> np.ndarray:
        """Positive inside the lesion, growing towards its core."""
        du, dv, z = plane.u - self.centre[0], plane.v - self.centre[1], plane.z
        c, s = math.cos(self.angle), math.sin(self.angle)
        d2 = ((c * du + s * dv) / self.radii[0]) ** 2 + ((c * dv - s * du) / self.radii[1]) ** 2
        d2 = d2 + ((z - self.centre[2]) / self.radii[2]) ** 2
        return 1.0 - np.sqrt(d2) + self.irregularity * self.shape(plane)

    def apply(self, hu: np.ndarray, margin: np.ndarray, region: np.ndarray, head: _Head) -> None:
        """Replace parenchyma with clotted blood, blending over a thin rim."""
        weight = np.clip(margin / 0.08, 0.15, 1.0) * region
        hu += weight * (head.grey_hu + self.excess_hu - hu)


class _Infarct:
    """Hypodense arterial-territory wedge reaching the cortex, in brain-normalised coordinates."""

    # Swelling closes the sulci over an infarct, one of the early signs radiologists look for.
    effaces_sulci = True

    def __init__(self, rng: np.random.Generator, slab: tuple[float, float]) -> None:
        side = 1 if rng.random() < 0.5 else -1
        territory = ("mca", "aca", "pca")[int(rng.choice(3, p=[0.6, 0.15, 0.25]))]
        self.midline_side = 0  # hemisphere a paramedian wedge must stay in
        if territory == "mca":
            # Lateral convexity wedge pointing at the basal ganglia.
            self.direction = (0.0 if side > 0 else math.pi) + rng.uniform(-0.35, 0.35)
            self.half_width = rng.uniform(0.2, 0.6)
        else:
            # Paramedian wedge, anterior or posterior, that must not cross the falx.
            off_midline = side * rng.uniform(0.15, 0.45)
            self.direction = (
                -math.pi / 2 + off_midline if territory == "aca" else math.pi / 2 - off_midline
            )
            self.half_width, self.midline_side = rng.uniform(0.2, 0.4), side
        z0, half = slab
        self.z_centre = z0 + rng.uniform(-0.2, 0.2) * half
        subtle = rng.random() < SUBTLE_FRACTION
        self.z_radius = (half + abs(self.z_centre - z0)) * (
            rng.uniform(1.05, 1.5) if subtle else rng.uniform(1.6, 2.2)
        )
        self.inner_radius = rng.uniform(0.35, 0.65)
        self.irregularity = rng.uniform(0.05, 0.2)
        self.shape = _SmoothField(rng, 8, 6.0)
        # hyperacute infarcts drop a few HU, established ones 12-20 HU
        self.drop_hu = rng.uniform(2.0, 5.0) if subtle else rng.uniform(12.0, 20.0)
        self.diffuseness = rng.uniform(0.15, 0.5)

    def margin(self, plane: _Plane) -> np.ndarray:
        """Positive inside the territory; narrows towards the ends of its z extent."""
        t = min(((plane.z - self.z_centre) / self.z_radius) ** 2, 0.999)
        half_width = self.half_width * math.sqrt(1.0 - t)
        inner = self.inner_radius + (1.0 - self.inner_radius) * 0.5 * t
        off_axis = np.remainder(plane.theta - self.direction + np.pi, 2 * np.pi) - np.pi
        radial = (plane.radius - inner) / (1.0 - inner) * 2.0
        inside = np.minimum(1.0 - np.abs(off_axis) / half_width, radial)
        inside = inside + self.irregularity * self.shape(plane)
        if self.midline_side:
            inside = np.minimum(inside, (self.midline_side * plane.u - 0.02) * 10.0)
        return inside

    def apply(self, hu: np.ndarray, margin: np.ndarray, region: np.ndarray, head: _Head) -> None:
        """Darken the territory towards oedematous white matter, fading in from its border."""
        # Grey matter loses its extra density first (the lost grey/white distinction),
        # then the whole territory drops a few HU more.
        weight = np.clip(margin[region] / self.diffuseness, 0.3, 1.0)
        grey_excess = np.maximum(hu[region] - head.white_hu, 0.0)
        hu[region] -= np.minimum(2.0 * weight, 1.0) * grey_excess + weight * self.drop_hu


def _sample_lesions(
    stroke_type: str, head: _Head, rng: np.random.Generator
) -> list[_Hemorrhage | _Infarct]:
    """Draw one patient's lesions; each spans the slab its slices sample."""
    if stroke_type == "hemorrhagic":
        return [_Hemorrhage(rng, head.slab, first=i == 0) for i in range(int(rng.integers(1, 3)))]
    if stroke_type == "ischemic":
        return [_Infarct(rng, head.slab)]
    return []


def _ventricles(plane: _Plane, head: _Head) -> np.ndarray:
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


def _slice_plane(head: _Head, z: float, axis: np.ndarray) -> tuple[_Plane, float, float]:
    """Brain coordinates of the slice at level z, with the head's in-plane size there."""
    level = math.sqrt(max(1.0 - z * z, 0.05))
    lateral, ap = head.semi_axes[0] * level, head.semi_axes[1] * level
    inner = 1.0 - head.skull / (0.5 * (lateral + ap))
    c, s = math.cos(head.rotation), math.sin(head.rotation)
    cx, cy = head.centre
    ku, kv = lateral * inner, ap * inner
    plane = _Plane(
        x=axis,
        y=axis,
        u_map=(float((-c * cx - s * cy) / ku), float(c / ku), float(s / ku)),
        v_map=(float((s * cx - c * cy) / kv), float(-s / kv), float(c / kv)),
        z=z,
    )
    return plane, inner, 0.5 * (lateral + ap)


@dataclass
class _Anatomy:
    """One slice's anatomy in HU, before lesions, noise and blur, with the maps lesions need."""

    plane: _Plane
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


def _render_anatomy(head: _Head, z: float, axis: np.ndarray) -> _Anatomy:
    """The head at level z in HU: skull, scalp, cortex and white matter, sulci and CSF."""
    plane, inner, radius = _slice_plane(head, z, axis)
    u, v, theta = plane.u, plane.v, plane.theta
    # rho is 1 on the outer skull table; the egg factor widens the back of the head.
    rho = inner * np.sqrt((u / (1.0 + head.egg * np.clip(v * inner, -1, 1))) ** 2 + v**2)
    skull = head.skull * (1.0 + 0.3 * np.sin(theta) ** 2) / radius
    rb = rho / (1.0 - skull)  # 1 on the inner skull table

    hu = np.full(u.shape, _AIR_HU, dtype=np.float32)
    hu[rho < 1.0 + head.scalp / radius] = _SCALP_HU
    hu[rho < 1.0] = _BONE_HU
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
    ventricles = _ventricles(plane, head)
    cisterns = (rb > 1.0 - rim) | fissure | ventricles
    csf_fraction = np.maximum(sulcus_csf, cisterns)
    hu[brain] = (tissue + csf_fraction * (_CSF_HU - tissue))[brain]
    return _Anatomy(
        plane, hu, tissue, rb, brain, sulcus_line, depth, cisterns, ventricles, csf_fraction
    )


def _acquire(hu: np.ndarray, head: _Head, rng: np.random.Generator) -> np.ndarray:
    """What the scanner makes of the HU map: quantum noise, then its point-spread blur."""
    hu += head.noise_hu * rng.standard_normal(hu.shape, dtype=np.float32)
    return _gaussian_blur(hu, head.blur * max(hu.shape[0] / 128, 0.5))


def _render_slice(
    head: _Head,
    lesions: list[_Hemorrhage | _Infarct],
    z: float,
    axis: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one axial slice at level z; returns the windowed uint8 image and lesion mask."""
    anatomy = _render_anatomy(head, z, axis)
    plane, hu, tissue = anatomy.plane, anatomy.hu, anatomy.tissue

    # Lesions replace parenchyma only: blood or oedema never shows up in CSF or bone.
    parenchyma = anatomy.parenchyma
    parenchyma_and_sulci = anatomy.brain & ~anatomy.cisterns
    mask = np.zeros(hu.shape, dtype=bool)
    min_pixels = max(8, round(16 * (hu.shape[0] / 128) ** 2))
    for i, lesion in enumerate(lesions):
        margin = lesion.margin(plane)
        eligible = parenchyma_and_sulci if lesion.effaces_sulci else parenchyma
        region = (margin > 0) & eligible
        if i == 0 and region.sum() < min_pixels:
            # Near the end of a lesion the section can vanish; keep its closest few pixels.
            region = _nearest_pixels(margin, eligible, min_pixels)
            margin = np.where(region, np.inf, margin)
        if lesion.effaces_sulci:
            hu[region] = tissue[region]
        lesion.apply(hu, margin, region, head)
        mask |= region
    return _window_uint8(_acquire(hu, head, rng)), mask


def _nearest_pixels(margin: np.ndarray, eligible: np.ndarray, count: int) -> np.ndarray:
    """The `count` eligible pixels of highest margin: a lesion's section where it all but ends."""
    candidates = np.where(eligible, margin, -np.inf).ravel()
    nearest = np.argpartition(-candidates, count)[:count]
    region = np.zeros(margin.size, dtype=bool)
    region[nearest] = True
    return region.reshape(margin.shape)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding, standing in for the scanner's PSF."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float32) / sigma) ** 2)
    taps /= taps.sum()
    rows, cols = image.shape
    padded = np.pad(image, radius, mode="edge")
    across = sum(w * padded[:, k : k + cols] for k, w in enumerate(taps))
    return sum(w * across[k : k + rows, :] for k, w in enumerate(taps))


def _window_uint8(hu: np.ndarray) -> np.ndarray:
    """Map Hounsfield units through the brain window to 0..255 grey levels."""
    brain = WINDOW_PRESETS["brain"]
    return window_hu(hu, brain.width, brain.level)


def _phantom_record(config: PhantomConfig) -> dict[str, object]:
    """What phantom.json holds: the config plus the generator version that wrote it."""
    return {
        **asdict(config),
        "classes": list(config.classes),
        "generator_version": _GENERATOR_VERSION,
    }


def _remove_generated(out_dir: Path) -> None:
    """Delete only files this generator writes, leaving anything a user put alongside."""
    folders = [out_dir / c for c in KNOWN_CLASSES] + [out_dir / "masks" / c for c in KNOWN_CLASSES]
    for folder in [*folders, out_dir / "masks"]:
        if folder.is_dir():
            for file in folder.iterdir():
                if file.is_file() and _SLICE_FILE.match(file.name):
                    file.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    for name in ("manifest.csv", "phantom.json"):
        (out_dir / name).unlink(missing_ok=True)


def _only_generated(out_dir: Path) -> bool:
    """Whether every file under out_dir is one this generator writes."""
    owned = {*KNOWN_CLASSES, "masks", "manifest.csv", "phantom.json"}
    for entry in out_dir.iterdir():
        if entry.name not in owned:
            return False
        if entry.is_dir():
            folders = [entry / c for c in KNOWN_CLASSES] if entry.name == "masks" else [entry]
            for path in entry.rglob("*"):
                if path.is_dir() and path not in folders:
                    return False
                generated = path.parent in folders and _SLICE_FILE.match(path.name)
                if path.is_file() and not generated:
                    return False
    return True


def generate_phantom(
    out_dir: str | Path,
    config: PhantomConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the phantom dataset to out_dir and return the path to its manifest.csv.

    An existing folder written with the same config is reused as is. Any other non-empty
    folder raises FileExistsError unless overwrite=True, which deletes only the files this
    generator owns (class folders' slice PNGs, masks/, manifest.csv, phantom.json).
    """
    config = config or PhantomConfig()
    out_dir = Path(out_dir)
    manifest_path, record_path = out_dir / "manifest.csv", out_dir / "phantom.json"
    if out_dir.is_dir() and any(out_dir.iterdir()):
        try:
            existing = json.loads(record_path.read_text())
        except (OSError, ValueError):
            existing = None
        if existing == _phantom_record(config) and manifest_path.is_file():
            return manifest_path
        # without phantom.json, a folder of nothing but generated files is a write that
        # was interrupted (Ctrl-C, a full disk): start it again
        interrupted = existing is None and _only_generated(out_dir)
        if not overwrite and not interrupted:
            raise FileExistsError(
                f"{out_dir} is not empty and does not hold a phantom with {config}; "
                "pass overwrite=True to replace the generated files, or choose another folder."
            )
        _remove_generated(out_dir)

    size = config.image_size
    # float32 throughout: vectorised transcendentals, and plenty for 8-bit output.
    axis = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    for stroke_type in config.classes:
        (out_dir / stroke_type).mkdir(parents=True, exist_ok=True)
        (out_dir / "masks" / stroke_type).mkdir(parents=True, exist_ok=True)

    rows = []
    patients = tqdm(range(config.n_patients), desc="phantom", unit="patient", disable=not progress)
    for index in patients:
        # A child generator per patient keeps each patient fixed whatever n_patients is.
        rng = np.random.default_rng([config.seed, index])
        stroke_type = config.classes[index % len(config.classes)]
        patient_id = f"P{index:04d}"
        head = _Head(rng)
        lesions = _sample_lesions(stroke_type, head, rng)
        z0, half = head.slab
        n = config.slices_per_patient
        levels = z0 + half * np.linspace(-1.0, 1.0, n) if n > 1 else np.array([z0])
        for slice_index, z in enumerate(levels):
            image, mask = _render_slice(head, lesions, float(z), axis, rng)
            name = f"{patient_id}_s{slice_index:02d}.png"
            image_rel, mask_rel = f"{stroke_type}/{name}", f"masks/{stroke_type}/{name}"
            Image.fromarray(image).save(out_dir / image_rel, format="PNG")
            Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / mask_rel, format="PNG")
            rows.append(
                [image_rel, stroke_type, patient_id, slice_index, mask_rel, int(mask.sum())]
            )

    with atomic_writer(manifest_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "patient_id", "slice", "mask_path", "lesion_area"])
        writer.writerows(rows)
    # Written last: its presence marks a complete dataset that later calls may reuse.
    atomic_write_text(record_path, json.dumps(_phantom_record(config), indent=2) + "\n")
    return manifest_path

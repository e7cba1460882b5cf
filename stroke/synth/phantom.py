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
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from stroke.errors import ConfigError
from stroke.io import atomic_write_text, atomic_writer
from stroke.synth.anatomy import (
    Head,
    Plane,
    SmoothField,
    acquire,
    log_uniform,
    nearest_pixels,
    render_anatomy,
    window_uint8,
)

__all__ = ["KNOWN_CLASSES", "PhantomConfig", "generate_phantom"]

KNOWN_CLASSES: tuple[str, ...] = ("normal", "hemorrhagic", "ischemic")

# Bump when the rendering changes, so folders written by an older generator are not reused.
_GENERATOR_VERSION = 3
#: Share of lesion patients whose lesion is subtle (small or faint): the hard cases.
#: Most acute lesions are plainly visible; a default run must reach high accuracy in
#: minutes on a CPU while a few remain genuinely hard.
SUBTLE_FRACTION = 0.1
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
        size = log_uniform(rng, 0.05, 0.1) if subtle else rng.uniform(0.1, 0.24)
        self.centre = (r * math.cos(a), r * math.sin(a), zc)
        self.radii = (size, size * rng.uniform(0.6, 1.6), reach)
        self.angle = rng.uniform(0, np.pi)
        self.irregularity = rng.uniform(0.05, 0.25)
        self.shape = SmoothField(rng, 8, 10.0)
        # over grey matter, the densest tissue; acute blood is ~20-45 HU above it
        self.excess_hu = log_uniform(rng, 3.0, 12.0) if subtle else rng.uniform(25.0, 45.0)

    def margin(self, plane: Plane) -> np.ndarray:
        """Positive inside the lesion, growing towards its core."""
        du, dv, z = plane.u - self.centre[0], plane.v - self.centre[1], plane.z
        c, s = math.cos(self.angle), math.sin(self.angle)
        d2 = ((c * du + s * dv) / self.radii[0]) ** 2 + ((c * dv - s * du) / self.radii[1]) ** 2
        d2 = d2 + ((z - self.centre[2]) / self.radii[2]) ** 2
        return 1.0 - np.sqrt(d2) + self.irregularity * self.shape(plane)

    def apply(self, hu: np.ndarray, margin: np.ndarray, region: np.ndarray, head: Head) -> None:
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
        self.shape = SmoothField(rng, 8, 6.0)
        # hyperacute infarcts drop a few HU, established ones 12-20 HU
        self.drop_hu = rng.uniform(2.0, 5.0) if subtle else rng.uniform(12.0, 20.0)
        self.diffuseness = rng.uniform(0.15, 0.5)

    def margin(self, plane: Plane) -> np.ndarray:
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

    def apply(self, hu: np.ndarray, margin: np.ndarray, region: np.ndarray, head: Head) -> None:
        """Darken the territory towards oedematous white matter, fading in from its border."""
        # Grey matter loses its extra density first (the lost grey/white distinction),
        # then the whole territory drops a few HU more.
        weight = np.clip(margin[region] / self.diffuseness, 0.3, 1.0)
        grey_excess = np.maximum(hu[region] - head.white_hu, 0.0)
        hu[region] -= np.minimum(2.0 * weight, 1.0) * grey_excess + weight * self.drop_hu


def _sample_lesions(
    stroke_type: str, head: Head, rng: np.random.Generator
) -> list[_Hemorrhage | _Infarct]:
    """Draw one patient's lesions; each spans the slab its slices sample."""
    if stroke_type == "hemorrhagic":
        return [_Hemorrhage(rng, head.slab, first=i == 0) for i in range(int(rng.integers(1, 3)))]
    if stroke_type == "ischemic":
        return [_Infarct(rng, head.slab)]
    return []


def _render_slice(
    head: Head,
    lesions: list[_Hemorrhage | _Infarct],
    z: float,
    axis: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one axial slice at level z; returns the windowed uint8 image and lesion mask."""
    anatomy = render_anatomy(head, z, axis)
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
            region = nearest_pixels(margin, eligible, min_pixels)
            margin = np.where(region, np.inf, margin)
        if lesion.effaces_sulci:
            hu[region] = tissue[region]
        lesion.apply(hu, margin, region, head)
        mask |= region
    return window_uint8(acquire(hu, head, rng)), mask


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
        head = Head(rng)
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

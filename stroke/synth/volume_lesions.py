"""The 3-D phantom's lesions: a hyperdense haemorrhage and a hypodense infarct in a whole scan.

Both are drawn in the head's own frame, so a follow-up scan of the same head, placed
differently on the couch, shows the same lesion where it was (a little changed). A lesion
only ever replaces brain: blood takes parenchyma, an infarct parenchyma and the sulci it
effaces; neither shows in the ventricles, the CSF rim, bone or air.

- hemorrhage (label 1): an irregular ellipsoid of clotted blood, 60-80 HU, 2-25 mL at the
  default size, anywhere in the parenchyma clear of the skull;
- infarct (label 2): an arterial-territory wedge (MCA on the convexity, ACA or PCA beside
  the falx) reaching the cortex, darkened to 14-20 HU, grey/white distinction lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from stroke.synth.anatomy import Anatomy, Plane, SmoothField, log_uniform

__all__ = [
    "LESION_CLASSES",
    "Hemorrhage",
    "Infarct",
    "Lesion",
    "ScanSlice",
    "draw_lesions",
    "paint_lesions",
]

#: The label volume's classes: voxel value i + 1 is LESION_CLASSES[i], 0 is background.
LESION_CLASSES: tuple[str, ...] = ("hemorrhage", "infarct")
#: A lesion smaller than this (in voxels of the scan it was drawn on) is drawn again.
_MIN_VOXELS = 12
_ATTEMPTS = 20


@dataclass
class ScanSlice:
    """One slice of a scan: its anatomy, and the same pixels in the head's own frame.

    `frame` measures the head in half-widths of its field of view, about its centre and
    along its own axes (u lateral, v antero-posterior, z up), whatever the scan's pose.
    """

    anatomy: Anatomy
    frame: Plane


@dataclass(frozen=True)
class Hemorrhage:
    """An irregular ellipsoid of clotted blood, in the head's frame (half-widths)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    angle: float  # of the first axis from the lateral one, in the axial plane
    irregularity: float
    shape: SmoothField
    blood_hu: float
    label = 1

    @classmethod
    def draw(
        cls, rng: np.random.Generator, centre: tuple[float, float, float], scale: float
    ) -> Hemorrhage:
        """A haemorrhage at `centre`; `scale`: millimetres per half-width, for its volume."""
        volume_mm3 = 1000.0 * log_uniform(rng, 2.0, 25.0)
        radius = (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1 / 3) / scale
        a, b = rng.uniform(0.75, 1.35, 2)
        return cls(
            centre=centre,
            radii=(radius * a, radius * b, radius / (a * b)),
            angle=float(rng.uniform(0.0, math.pi)),
            irregularity=float(rng.uniform(0.05, 0.3)),
            shape=SmoothField(rng, 8, 15.0),
            blood_hu=float(rng.uniform(60.0, 80.0)),
        )

    def followup(self, rng: np.random.Generator) -> Hemorrhage:
        """The same bleed days later: grown or partly resorbed, its clot a little less dense."""
        factor = rng.uniform(0.8, 1.25)
        return replace(
            self,
            radii=tuple(r * factor for r in self.radii),
            blood_hu=self.blood_hu - float(rng.uniform(0.0, 8.0)),
        )

    def margin(self, scan_slice: ScanSlice) -> np.ndarray:
        """Positive inside the lesion, growing towards its core."""
        frame = scan_slice.frame
        du, dv = frame.u - self.centre[0], frame.v - self.centre[1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        d2 = ((c * du + s * dv) / self.radii[0]) ** 2 + ((c * dv - s * du) / self.radii[1]) ** 2
        d2 = d2 + ((frame.z - self.centre[2]) / self.radii[2]) ** 2
        return 1.0 - np.sqrt(d2) + self.irregularity * self.shape(frame)

    def eligible(self, anatomy: Anatomy) -> np.ndarray:
        """Where blood may lie: parenchyma, never CSF."""
        return anatomy.parenchyma

    def paint(self, anatomy: Anatomy, margin: np.ndarray, region: np.ndarray) -> None:
        """Replace the region's parenchyma with blood, blending over a thin rim."""
        weight = np.clip(margin[region] / 0.1, 0.6, 1.0)
        anatomy.hu[region] += weight * (self.blood_hu - anatomy.hu[region])


@dataclass(frozen=True)
class Infarct:
    """A hypodense arterial-territory wedge reaching the cortex, in brain coordinates."""

    direction: float  # polar angle of the wedge's axis (0: the patient's left)
    half_width: float  # radians, at the territory's mid-height
    midline_side: int  # the hemisphere a paramedian wedge must stay in (0: none)
    z_centre: float  # brain z (1: the vertex)
    z_radius: float
    inner_radius: float  # where the wedge's tip lies, as a share of the way to the skull
    irregularity: float
    shape: SmoothField
    infarct_hu: float
    label = 2

    @classmethod
    def draw(cls, rng: np.random.Generator, z_unit: float) -> Infarct:
        """A territory; `z_unit`: half-widths per unit of brain z, for its height."""
        side = 1 if rng.random() < 0.5 else -1
        territory = ("mca", "aca", "pca")[int(rng.choice(3, p=[0.6, 0.15, 0.25]))]
        midline_side = 0
        if territory == "mca":  # lateral convexity, pointing at the basal ganglia
            direction = (0.0 if side > 0 else math.pi) + rng.uniform(-0.35, 0.35)
            half_width = rng.uniform(0.25, 0.6)
        else:  # paramedian, anterior or posterior, never across the falx
            off_midline = side * rng.uniform(0.15, 0.45)
            direction = (
                -math.pi / 2 + off_midline if territory == "aca" else math.pi / 2 - off_midline
            )
            half_width, midline_side = rng.uniform(0.2, 0.4), side
        return cls(
            direction=float(direction),
            half_width=float(half_width),
            midline_side=midline_side,
            z_centre=float(rng.uniform(-0.2, 0.5)),
            z_radius=float(rng.uniform(0.15, 0.35) / z_unit),
            inner_radius=float(rng.uniform(0.4, 0.7)),
            irregularity=float(rng.uniform(0.05, 0.2)),
            shape=SmoothField(rng, 8, 6.0),
            infarct_hu=float(rng.uniform(12.0, 18.0)),
        )

    def followup(self, rng: np.random.Generator) -> Infarct:
        """The same territory days later: a little larger as oedema peaks, and darker."""
        return replace(
            self,
            half_width=self.half_width * float(rng.uniform(1.0, 1.15)),
            z_radius=self.z_radius * float(rng.uniform(1.0, 1.15)),
            infarct_hu=self.infarct_hu - float(rng.uniform(0.0, 3.0)),
        )

    def margin(self, scan_slice: ScanSlice) -> np.ndarray:
        """Positive inside the territory; it narrows towards the ends of its height."""
        plane = scan_slice.anatomy.plane
        t = ((plane.z - self.z_centre) / self.z_radius) ** 2
        if t >= 1.0:
            return np.full(plane.u.shape, -1.0, dtype=np.float32)
        half_width = self.half_width * math.sqrt(1.0 - t)
        inner = self.inner_radius + (1.0 - self.inner_radius) * 0.5 * t
        off_axis = np.remainder(plane.theta - self.direction + np.pi, 2 * np.pi) - np.pi
        radial = (plane.radius - inner) / (1.0 - inner) * 2.0
        inside = np.minimum(1.0 - np.abs(off_axis) / half_width, radial)
        inside = inside + self.irregularity * self.shape(plane)
        if self.midline_side:
            inside = np.minimum(inside, (self.midline_side * plane.u - 0.02) * 10.0)
        return inside

    def eligible(self, anatomy: Anatomy) -> np.ndarray:
        """Where the territory may lie: parenchyma and the sulci its swelling closes."""
        return anatomy.brain & ~anatomy.cisterns

    def paint(self, anatomy: Anatomy, margin: np.ndarray, region: np.ndarray) -> None:
        """Efface the sulci, then darken the territory towards oedema from its border in."""
        hu = anatomy.hu
        hu[region] = anatomy.tissue[region]
        weight = np.clip(margin[region] / 0.2, 0.75, 1.0)
        hu[region] += weight * (self.infarct_hu - hu[region])


Lesion = Hemorrhage | Infarct


def lesion_regions(lesion: Lesion, scan: list[ScanSlice]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each slice's (margin, region) of the lesion: where it replaces brain."""
    regions = []
    for scan_slice in scan:
        margin = lesion.margin(scan_slice)
        regions.append((margin, (margin > 0) & lesion.eligible(scan_slice.anatomy)))
    return regions


def _bleed_centre(
    scan: list[ScanSlice], rng: np.random.Generator
) -> tuple[float, float, float] | None:
    """A random parenchyma pixel clear of the skull, in the head's frame; None if none."""
    candidates = [
        (k, np.flatnonzero(s.anatomy.parenchyma & (s.anatomy.rb < 0.75)))
        for k, s in enumerate(scan)
        if -0.4 < s.anatomy.plane.z < 0.65
    ]
    candidates = [(k, pixels) for k, pixels in candidates if pixels.size]
    if not candidates:
        return None
    k, pixels = candidates[int(rng.integers(len(candidates)))]
    row, column = np.unravel_index(pixels[int(rng.integers(pixels.size))], scan[k].frame.u.shape)
    frame = scan[k].frame
    return float(frame.u[row, column]), float(frame.v[row, column]), float(frame.z)


def draw_lesions(
    classes: list[str], scan: list[ScanSlice], rng: np.random.Generator, scale: float, z_unit: float
) -> list[Lesion]:
    """Draw a lesion of each class against the scan, again while it would be too small to see.

    `scale`: millimetres per half-width of the head's frame; `z_unit`: half-widths per unit
    of brain z. An infarct comes first in the list, so blood drawn after it wins any voxel
    both claim (a haemorrhagic transformation).
    """
    lesions: list[Lesion] = []
    for name in sorted(classes, key=lambda c: c != "infarct"):
        lesion = None
        for _ in range(_ATTEMPTS):
            if name == "infarct":
                lesion = Infarct.draw(rng, z_unit)
            else:
                centre = _bleed_centre(scan, rng)
                if centre is None:
                    break
                lesion = Hemorrhage.draw(rng, centre, scale)
            if sum(int(region.sum()) for _, region in lesion_regions(lesion, scan)) >= _MIN_VOXELS:
                break
        if lesion is not None:
            lesions.append(lesion)
    return lesions


def paint_lesions(lesions: list[Lesion], scan: list[ScanSlice]) -> np.ndarray:
    """Paint the lesions into the slices' HU; returns the (slices, rows, columns) label stack."""
    labels = np.zeros((len(scan), *scan[0].anatomy.hu.shape), dtype=np.uint8)
    for lesion in lesions:
        for k, (margin, region) in enumerate(lesion_regions(lesion, scan)):
            lesion.paint(scan[k].anatomy, margin, region)
            labels[k][region] = lesion.label
    return labels

"""What a scan of the volume phantom holds (`stroke-synth layout=volumes`); writing it is
stroke.synth.volume_files' business.

Each case is one axial head CT of the PNG phantom's heads (their own random stream), in HU,
about 64 x 64 x 32 voxels of about 3 x 3 x 5 mm, each scan's spacing jittered, with a label
volume beside it (0 background, 1 haemorrhage, 2 infarct; stroke.synth.volume_lesions).
About one patient in seven has a follow-up scan with the lesion a little changed, so splits
must keep a patient's scans together; about a third of the scans are stored LPS. A case is
`p<patient>_s<scan>` (p0001_s0; its follow-up p0001_s1).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from stroke.errors import ConfigError
from stroke.synth.anatomy import AIR_HU, Head, Plane, acquire, render_anatomy
from stroke.synth.ct_dicom import stored_hu
from stroke.synth.phantom import _require_int
from stroke.synth.volume_lesions import (
    LESION_CLASSES,
    Lesion,
    ScanSlice,
    draw_lesions,
    paint_lesions,
)

__all__ = ["VolumeCase", "VolumePhantomConfig", "render_patient"]

# Bump when the rendering changes, so folders written by an older generator are not reused.
GENERATOR_VERSION = 1
#: A random stream apart from the other layouts', so no two layouts share a head.
_STREAM = 2
#: The head fills 1/_FIT of the planned field of view, so no jittered spacing cuts it off.
_FIT = 1.1
#: A brain's half-height over its field's half-width: the head's proportions.
_Z_PER_HALF_WIDTH = 0.84
#: How often each patient's lesion classes are (none, haemorrhage, infarct, both).
_CLASS_MIX = ((), ("hemorrhage",), ("infarct",), ("hemorrhage", "infarct"))
_CLASS_ODDS = (0.25, 0.3, 0.3, 0.15)
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class VolumePhantomConfig:
    """Size and seed of a volume phantom; the seed alone fixes every voxel and every UID.

    `spacing` is the planned voxel size in mm (x, y, z); each scan's is jittered about it.
    `followup_fraction` of the patients get a second scan, `lps_fraction` of the scans are
    stored with an LPS affine.
    """

    n_patients: int = 35
    image_size: int = 64
    slices: int = 32
    spacing: tuple[float, float, float] = (3.0, 3.0, 5.0)
    seed: int = 0
    followup_fraction: float = 0.15
    lps_fraction: float = 0.33

    def __post_init__(self) -> None:
        _require_int("n_patients", self.n_patients, 1)
        _require_int("image_size", self.image_size, 32)
        _require_int("slices", self.slices, 8, "room for a lesion between skull base and vertex")
        _require_int("seed", self.seed, 0)
        spacing = self.spacing
        # Hydra hands a ListConfig; a tuple of floats keeps the config hashable and comparable.
        numbers = not isinstance(spacing, str) and hasattr(spacing, "__len__") and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in spacing
        )  # fmt: skip
        if not numbers or len(spacing) != 3 or not all(0 < v <= 20 for v in spacing):
            raise ConfigError(
                f"spacing={spacing!r} is invalid; allowed: [x, y, z], three mm in (0, 20]."
            )
        object.__setattr__(self, "spacing", tuple(float(v) for v in spacing))
        for name in ("followup_fraction", "lps_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"{name}={value!r} is invalid; allowed: a number in [0, 1].")
            object.__setattr__(self, name, float(value))

    @property
    def half_width_mm(self) -> float:
        """Millimetres per half-width of the head's frame: the head is drawn to the field."""
        return _FIT * self.image_size * min(self.spacing[:2]) / 2

    def has_followup(self, index: int) -> bool:
        """Whether patient `index` (from 0) has a second scan; round(n * fraction) of n do."""
        return _quota(index, self.followup_fraction)

    def case_names(self) -> list[str]:
        """Every case's name, patients in order, a patient's scans together."""
        return [
            _case_name(index, scan)
            for index in range(self.n_patients)
            for scan in range(1 + self.has_followup(index))
        ]


def _quota(ordinal: int, fraction: float) -> bool:
    """Whether item `ordinal` is one of a share `fraction`, spread evenly over the items."""
    return math.floor(round((ordinal + 1) * fraction + 0.5, 9)) > math.floor(
        round(ordinal * fraction + 0.5, 9)
    )


def _case_name(index: int, scan: int) -> str:
    """`p0001_s0`: the patient numbered from 1, the scan from 0."""
    return f"p{index + 1:04d}_s{scan}"


@dataclass
class VolumeCase:
    """One scan as the files hold it, in LPS voxel order: i to the patient's left, j to the
    back, k up (DICOM's rows and columns, and the order slices are rendered in).

    `hu` int16 and `labels` uint8 are (x, y, z) arrays; `brain` is inside the inner table.
    """

    name: str
    patient_id: str
    hu: np.ndarray
    labels: np.ndarray
    brain: np.ndarray
    spacing_mm: tuple[float, float, float]
    orientation: str  # "RAS" or "LPS": how the NIfTI files store it
    lesions: tuple[Lesion, ...] = ()  # as drawn, in the head's frame: the truth behind labels

    @cached_property
    def ras_affine(self) -> np.ndarray:
        """The affine of the scan stored RAS: spacing on the diagonal, the grid centred on 0."""
        affine = np.diag([*self.spacing_mm, 1.0])
        affine[:3, 3] = -(np.array(self.hu.shape) - 1) / 2 * np.array(self.spacing_mm)
        return affine

    @property
    def affine(self) -> np.ndarray:
        """The affine the NIfTI files carry: RAS, or LPS = diag(-1, -1, 1, 1) @ RAS."""
        return _RAS_TO_LPS @ self.ras_affine if self.orientation == "LPS" else self.ras_affine

    def stored(self, volume: np.ndarray) -> np.ndarray:
        """`volume` (LPS voxel order) arranged as the NIfTI files store it under `affine`."""
        # the grid is centred on 0, so reversing x and y maps LPS's voxels onto RAS's
        return volume if self.orientation == "LPS" else volume[::-1, ::-1, :]

    @property
    def origin_lps_mm(self) -> np.ndarray:
        """Where voxel (0, 0, 0) of the LPS order lies, in DICOM's LPS patient space."""
        return -(np.array(self.hu.shape) - 1) / 2 * np.array(self.spacing_mm)

    def volume_ml(self, label: int) -> float:
        """The true volume of a class: its voxel count times the voxel volume, in mL."""
        return int((self.labels == label).sum()) * math.prod(self.spacing_mm) / 1000.0

    @property
    def classes(self) -> list[str]:
        """The lesion classes present in the label volume."""
        return [name for i, name in enumerate(LESION_CLASSES) if (self.labels == i + 1).any()]


@dataclass(frozen=True)
class _Pose:
    """How one scan sees the head: its voxel size and where the head lies in it."""

    spacing_mm: tuple[float, float, float]
    centre: tuple[float, float]  # the head's centre in half-widths of its field
    rotation: float
    z_centre: float  # brain z at the grid's centre plane


def _draw_pose(
    config: VolumePhantomConfig, head: Head, rng: np.random.Generator, followup: bool
) -> _Pose:
    """A scan's pose: in-plane spacing jittered +-7 % (square pixels), slices +-10 %.

    A follow-up lies a little differently on the couch: shifted, turned, higher or lower.
    """
    in_plane = rng.uniform(0.933, 1.067)
    x, y, z = config.spacing
    spacing = (round(x * in_plane, 3), round(y * in_plane, 3), round(z * rng.uniform(0.9, 1.1), 3))
    z_centre = float(rng.uniform(0.01, 0.07))
    if not followup:
        return _Pose(spacing, head.centre, head.rotation, z_centre)
    shift = rng.uniform(-0.04, 0.04, 2)
    centre = (float(head.centre[0] + shift[0]), float(head.centre[1] + shift[1]))
    return _Pose(spacing, centre, float(head.rotation + rng.uniform(-0.1, 0.1)), z_centre)


def _scan_slices(config: VolumePhantomConfig, head: Head, pose: _Pose) -> list[ScanSlice]:
    """The scan's slices, inferior to superior: the anatomy and the head's frame of each."""
    size, half = config.image_size, config.half_width_mm
    sx, sy, sz = pose.spacing_mm
    columns = ((np.arange(size) - (size - 1) / 2) * sx / half).astype(np.float32)
    rows = ((np.arange(size) - (size - 1) / 2) * sy / half).astype(np.float32)
    posed = copy.copy(head)
    posed.centre, posed.rotation = pose.centre, pose.rotation
    c, s = math.cos(pose.rotation), math.sin(pose.rotation)
    cx, cy = pose.centre
    z_unit_mm = _Z_PER_HALF_WIDTH * half
    scan = []
    for k in range(config.slices):
        z = pose.z_centre + (k - (config.slices - 1) / 2) * sz / z_unit_mm
        anatomy = render_anatomy(posed, z, columns, rows)
        if abs(z) >= 1.0:  # above the vertex (or below the skull base): air
            anatomy.hu[:] = AIR_HU
            anatomy.brain[:] = False
        frame = Plane(
            x=columns,
            y=rows,
            u_map=(-c * cx - s * cy, c, s),
            v_map=(s * cx - c * cy, -s, c),
            z=z * _Z_PER_HALF_WIDTH,
        )
        scan.append(ScanSlice(anatomy, frame))
    return scan


def _lps_order(stack: np.ndarray) -> np.ndarray:
    """A (slices, rows, columns) stack as an (x, y, z) volume in LPS voxel order."""
    return np.ascontiguousarray(stack.transpose(2, 1, 0))


def render_patient(config: VolumePhantomConfig, index: int) -> list[VolumeCase]:
    """Render patient `index`'s scans (the first, and a follow-up for some); the same for
    any n_patients.
    """
    rng = np.random.default_rng([config.seed, index, _STREAM])
    head = Head(rng)
    classes = _CLASS_MIX[int(rng.choice(len(_CLASS_MIX), p=_CLASS_ODDS))]
    ordinal = index + sum(config.has_followup(i) for i in range(index))
    cases, lesions = [], None
    for scan in range(1 + config.has_followup(index)):
        # a stream a scan, so whether a follow-up exists leaves the first scan as it is
        scan_rng = np.random.default_rng([config.seed, index, _STREAM, scan])
        pose = _draw_pose(config, head, scan_rng, followup=scan > 0)
        slices = _scan_slices(config, head, pose)
        if lesions is None:
            lesions = draw_lesions(list(classes), slices, rng, config.half_width_mm,
                                   _Z_PER_HALF_WIDTH)  # fmt: skip
        else:
            lesions = [lesion.followup(rng) for lesion in lesions]
        labels = paint_lesions(lesions, slices)
        hu = np.stack([stored_hu(acquire(s.anatomy.hu, head, scan_rng)) for s in slices])
        cases.append(
            VolumeCase(
                name=_case_name(index, scan),
                patient_id=f"p{index + 1:04d}",
                hu=_lps_order(hu),
                labels=_lps_order(labels),
                brain=_lps_order(np.stack([s.anatomy.brain for s in slices])),
                spacing_mm=pose.spacing_mm,
                orientation="LPS" if _quota(ordinal + scan, config.lps_fraction) else "RAS",
                lesions=tuple(lesions),
            )
        )
    return cases

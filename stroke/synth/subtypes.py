"""The five haemorrhage subtypes of the series phantom: where each kind of blood lies in a slice.

A lesion spans a run of consecutive slices. Its section is largest in the middle of the run
and shrinks and fades towards both ends (`profile`), as a real bleed's partial volume does,
so the slices at a run's ends are hard on their own and easier with their neighbours.

- epidural: a biconvex lens against the inner table of the skull, short and thick;
- subdural: a crescent along the inner table, long and thin;
- intraparenchymal: an irregular blob in the parenchyma, clear of the skull;
- intraventricular: blood filling the dependent (posterior) part of a lateral ventricle;
- subarachnoid: thin bright lines in the sulci and cisterns of a sector of the brain.
"""

from __future__ import annotations

import math

import numpy as np

from stroke.synth.anatomy import Anatomy, SmoothField, nearest_pixels

#: RSNA's subtypes in its CSV order; a mask pixel of value i + 1 is blood of SUBTYPES[i].
SUBTYPES: tuple[str, ...] = (
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
)
#: Drawing order: a pixel two lesions would claim belongs to the one drawn first.
DRAW_ORDER: tuple[str, ...] = (
    "epidural",
    "subdural",
    "intraventricular",
    "intraparenchymal",
    "subarachnoid",
)
#: Share of patients without any bleed.
NO_BLEED_FRACTION = 0.4
#: How often each subtype is among a patient's bleeds (epidural is the rare one, as in RSNA).
_FREQUENCY = np.array([0.08, 0.25, 0.17, 0.25, 0.25])
_RUN_LENGTH = (3, 10)
#: Eligible pixels (as a share of the image) a slice needs to hold a subtype's section.
_ROOM = {
    "epidural": 0.2,
    "subdural": 0.2,
    "intraparenchymal": 0.08,
    "intraventricular": 0.0025,
    "subarachnoid": 0.004,
}


def _angle_from(theta: np.ndarray, centre: float) -> np.ndarray:
    """Signed angle of every pixel from `centre`, in (-pi, pi]."""
    return np.remainder(theta - centre + np.pi, 2 * np.pi) - np.pi


def _lateral_angle(rng: np.random.Generator, side: int) -> float:
    """A direction over one hemisphere's convexity (side 1: the patient's left, -1: right)."""
    return (0.0 if side > 0 else math.pi) + rng.uniform(-0.9, 0.9)


class _Bleed:
    """One subtype's blood over a run of slices; subclasses say where it lies in a slice."""

    subtype = ""

    def __init__(self, rng: np.random.Generator) -> None:
        self.blood_hu = rng.uniform(58.0, 80.0)  # acute clotted blood
        self.first, self.last = 0, -1

    def place(self, first: int, last: int) -> None:
        """Span slices first..last (inclusive)."""
        self.first, self.last = first, last

    def profile(self, index: int) -> float:
        """How much of the lesion slice `index` cuts: 1 mid-run, small at its ends, 0 outside."""
        if not self.first <= index <= self.last:
            return 0.0
        half = (self.last - self.first) / 2 + 0.15
        t = (index - (self.first + self.last) / 2) / half
        return math.sqrt(1.0 - t * t)

    def eligible(self, anatomy: Anatomy) -> np.ndarray:
        """Where this subtype can lie in the slice."""
        return anatomy.brain

    def margin(self, anatomy: Anatomy, profile: float) -> np.ndarray:
        """Positive inside the lesion's section at this profile, growing towards its core."""
        raise NotImplementedError

    def room(self, anatomy: Anatomy) -> bool:
        """Whether the slice has room for this subtype (where its runs may go)."""
        return self.eligible(anatomy).sum() >= _ROOM[self.subtype] * anatomy.hu.size


class _AgainstSkull(_Bleed):
    """Blood between the skull and the brain, over an arc of the inner table."""

    def __init__(self, rng, side, half_arc, thickness) -> None:
        super().__init__(rng)
        self.direction = _lateral_angle(rng, side)
        self.half_arc, self.thickness = half_arc, thickness

    def shape(self, s: np.ndarray) -> np.ndarray:
        """Thickness along the arc (s from -1 to 1), as a share of the greatest."""
        raise NotImplementedError

    def scales(self, profile: float) -> tuple[float, float]:
        """The arc and thickness of the section at this profile, as shares of the largest."""
        raise NotImplementedError

    def margin(self, anatomy: Anatomy, profile: float) -> np.ndarray:
        arc, thick = self.scales(profile)
        s = _angle_from(anatomy.plane.theta, self.direction) / (self.half_arc * arc)
        depth = self.thickness * thick * self.shape(np.clip(s, -1.0, 1.0))
        return np.minimum(1.0 - np.abs(s), (anatomy.rb - 1.0 + depth) / self.thickness)


class _Epidural(_AgainstSkull):
    """A lens: short, thick in the middle, its ends pinched where the dura stays attached."""

    subtype = "epidural"

    def __init__(self, rng: np.random.Generator, side: int) -> None:
        super().__init__(rng, side, rng.uniform(0.28, 0.45), rng.uniform(0.15, 0.25))

    def shape(self, s: np.ndarray) -> np.ndarray:
        return 1.0 - s**2

    def scales(self, profile: float) -> tuple[float, float]:
        return 0.45 + 0.55 * profile, profile


class _Subdural(_AgainstSkull):
    """A crescent: long and thin, of even thickness until close to its ends."""

    subtype = "subdural"

    def __init__(self, rng: np.random.Generator, side: int) -> None:
        super().__init__(rng, side, rng.uniform(0.8, 1.3), rng.uniform(0.06, 0.11))

    def shape(self, s: np.ndarray) -> np.ndarray:
        return np.sqrt(1.0 - s**4)

    def scales(self, profile: float) -> tuple[float, float]:
        return 0.5 + 0.5 * profile, 0.5 + 0.5 * profile


class _Intraparenchymal(_Bleed):
    """An irregular blob in the parenchyma, clear of the skull and the ventricles."""

    subtype = "intraparenchymal"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        # lobar or basal-ganglia, beside the ventricles rather than in them
        side = 1 if rng.random() < 0.5 else -1
        self.centre = (side * rng.uniform(0.2, 0.45), rng.uniform(-0.4, 0.4))
        size = rng.uniform(0.12, 0.22)
        self.radii = (size, size * rng.uniform(0.65, 1.5))
        self.angle = rng.uniform(0, np.pi)
        self.irregularity = rng.uniform(0.05, 0.2)
        self.outline = SmoothField(rng, 8, 10.0)

    def eligible(self, anatomy: Anatomy) -> np.ndarray:
        return anatomy.parenchyma & (anatomy.rb < 0.8) & ~anatomy.ventricles

    def margin(self, anatomy: Anatomy, profile: float) -> np.ndarray:
        plane = anatomy.plane
        du, dv = plane.u - self.centre[0], plane.v - self.centre[1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        ru, rv = self.radii[0] * profile, self.radii[1] * profile
        d2 = ((c * du + s * dv) / ru) ** 2 + ((c * dv - s * du) / rv) ** 2
        return 1.0 - np.sqrt(d2) + self.irregularity * self.outline(plane)


class _Intraventricular(_Bleed):
    """Blood settling in the posterior, dependent part of one or both lateral ventricles."""

    subtype = "intraventricular"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        self.side = int(rng.choice([-1, 0, 1]))  # 0: both ventricles
        self.fill = rng.uniform(0.5, 1.0)

    def eligible(self, anatomy: Anatomy) -> np.ndarray:
        if not self.side:
            return anatomy.ventricles
        return anatomy.ventricles & (self.side * anatomy.plane.u > 0)

    def margin(self, anatomy: Anatomy, profile: float) -> np.ndarray:
        # +v is posterior: a supine patient's blood sinks into the atria and occipital horns
        return anatomy.plane.v - (0.3 - 0.6 * self.fill * profile)


class _Subarachnoid(_Bleed):
    """Blood in the CSF of the sulci, the interhemispheric fissure and the rim over a sector."""

    subtype = "subarachnoid"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        self.blood_hu = rng.uniform(55.0, 75.0)  # thin layers, blurred into the CSF around them
        self.direction = rng.uniform(0, 2 * np.pi)
        self.half_sector = rng.uniform(0.5, 1.4)
        self.depth = rng.uniform(0.15, 0.3)  # how far down the sulci it reaches mid-run

    def eligible(self, anatomy: Anatomy) -> np.ndarray:
        sulci = (anatomy.sulcus_line > 0.8) & (anatomy.rb > 1.0 - anatomy.sulcus_depth)
        return anatomy.brain & ~anatomy.ventricles & (sulci | anatomy.cisterns)

    def margin(self, anatomy: Anatomy, profile: float) -> np.ndarray:
        # mid-run it fills a wide sector deep into the sulci; at the ends, their mouths
        off = np.abs(_angle_from(anatomy.plane.theta, self.direction))
        sector = 1.0 - off / (self.half_sector * (0.4 + 0.6 * profile))
        return np.minimum(sector, (anatomy.rb - 1.0 + self.depth * profile) / self.depth)


def _draw_bleeds(rng: np.random.Generator) -> list[_Bleed]:
    """One patient's bleeds before placement: none for some, else one to three subtypes."""
    if rng.random() < NO_BLEED_FRACTION:
        return []
    count = int(rng.integers(1, 4))
    chosen = {SUBTYPES[i] for i in rng.choice(len(SUBTYPES), count, replace=False, p=_FREQUENCY)}
    # an epidural and a subdural together lie on opposite sides, so neither hides the other
    side = 1 if rng.random() < 0.5 else -1
    makers = {
        "epidural": lambda: _Epidural(rng, side),
        "subdural": lambda: _Subdural(rng, -side if "epidural" in chosen else side),
        "intraventricular": lambda: _Intraventricular(rng),
        "intraparenchymal": lambda: _Intraparenchymal(rng),
        "subarachnoid": lambda: _Subarachnoid(rng),
    }
    return [makers[name]() for name in DRAW_ORDER if name in chosen]


def _place_run(bleed: _Bleed, anatomies: list[Anatomy], rng: np.random.Generator) -> bool:
    """Put the bleed on a run of slices that all have room for it; False when none has."""
    fits = np.array([bleed.room(a) for a in anatomies])
    wanted = int(rng.integers(_RUN_LENGTH[0], _RUN_LENGTH[1] + 1))
    for length in range(wanted, _RUN_LENGTH[0] - 1, -1):
        starts = [i for i in range(len(fits) - length + 1) if fits[i : i + length].all()]
        if starts:
            first = int(rng.choice(starts))
            bleed.place(first, first + length - 1)
            return True
    return False


def draw_patient_bleeds(anatomies: list[Anatomy], rng: np.random.Generator) -> list[_Bleed]:
    """A patient's bleeds, each placed on a run of its series' slices, in drawing order."""
    return [b for b in _draw_bleeds(rng) if _place_run(b, anatomies, rng)]


def paint_bleeds(hu: np.ndarray, anatomy: Anatomy, index: int, bleeds: list[_Bleed]) -> np.ndarray:
    """Draw the bleeds that reach slice `index` into its HU map; returns its subtype mask.

    Blood replaces what was there in proportion to how much of the lesion the slice
    cuts (the partial volume at a run's ends). Each reaching bleed keeps a few pixels
    however thin its section, so a slice labelled with a subtype always shows it.
    """
    mask = np.zeros(hu.shape, dtype=np.uint8)
    min_pixels = max(2, round(3 * (hu.shape[0] / 64) ** 2))
    for bleed in bleeds:
        profile = bleed.profile(index)
        if profile <= 0.0:
            continue
        eligible = bleed.eligible(anatomy) & (mask == 0)
        margin = bleed.margin(anatomy, profile)
        region = (margin > 0) & eligible
        if region.sum() < min_pixels:
            region = nearest_pixels(margin, eligible, min(min_pixels, int(eligible.sum())))
        weight = 0.35 + 0.65 * profile
        hu[region] += weight * (bleed.blood_hu - hu[region])
        mask[region] = SUBTYPES.index(bleed.subtype) + 1
    return mask

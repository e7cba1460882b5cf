"""The API's answers as Pydantic models: what FastAPI's OpenAPI page (/docs) documents."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Decision(BaseModel):
    """How probabilities become a decision."""

    rule: str = Field(
        description="`threshold` (binary tasks with an operating point), `argmax`, or "
        "`thresholds` (multi-label: one threshold per label)"
    )
    threshold: float | None = Field(description="decide the positive class when P >= threshold")
    positive_class: str | None
    patient_thresholds: dict[str, float] = Field(
        description="threshold per patient aggregation (`max`, `mean`) for series rows"
    )
    thresholds: dict[str, float] | None = Field(
        None, description="multi-label models: a label is found when P(label) >= its threshold"
    )
    source: str = Field(description="where the rule comes from, in words")
    chosen_on_validation: dict[str, object] | None = Field(
        description="stroke-eval's operating point: method, sensitivity, specificity"
    )


class Lesion(BaseModel):
    """A segmenter's finding."""

    area_px: int
    area_mm2: float | None
    outline: list[list[list[float]]] = Field(
        description="polygons of (x, y) in 0..1 of the letterboxed square image"
    )


class DicomFields(BaseModel):
    """The DICOM header fields a series is recognised by (the caller's own data)."""

    patient_id: str | None
    study_uid: str | None
    series_uid: str | None
    instance: int | None


class FileResult(BaseModel):
    """One uploaded file: its probabilities and decision, or its error."""

    index: int = Field(description="position of the file in the request")
    name: str = Field(description="the client's file name, for display only")
    sha256: str
    type: str | None = Field(
        description="the format read from the content (png, jpeg, dicom, ...: stroke.data.readers)"
    )
    error: str | None
    probabilities: dict[str, float] | None = Field(
        description="class -> P (summing to 1), or for a multi-label model label -> P (each "
        "its own)"
    )
    predicted_class: str | None = Field(
        description="the decided class; multi-label: the labels found, `a|any`, or `none`"
    )
    probability: float | None = Field(
        description="probability of the predicted class; multi-label: the highest label's"
    )
    labels: list[str] | None = Field(None, description="multi-label: the labels found")
    thresholds: dict[str, float] | None = Field(
        None, description="multi-label: the threshold each label is decided at"
    )
    decision_rule: str
    threshold: float | None
    images: dict[str, str] = Field(
        description="PNG data URLs: `model` (as the model sees it), `gradcam`, and for DICOM "
        "one per window preset (`brain`, `subdural`, `stroke`, `bone`)"
    )
    lesion: Lesion | None
    dicom: DicomFields | None
    series: int | None = Field(description="the series summary row this file belongs to")


class SeriesRow(BaseModel):
    """Files of one patient's study (same PatientID and StudyInstanceUID), aggregated."""

    series: int
    patient_id: str
    study_uid: str
    files: list[int]
    n_images: int
    aggregation: str = Field(description="`max` (most suspicious slice) or `mean`")
    most_suspicious: int = Field(
        description="index of the file with the lowest P(negative) (multi-label: the highest "
        "label probability)"
    )
    probabilities: dict[str, float]
    predicted_class: str
    labels: list[str] | None = Field(None, description="multi-label: the labels found")
    thresholds: dict[str, float] | None = None
    decision_rule: str
    threshold: float | None
    threshold_source: str


class PredictResponse(BaseModel):
    """The answer of `POST /api/predict`."""

    request_id: str
    checkpoint_sha256: str
    classes: list[str]
    decision: Decision
    results: list[FileResult]
    series: list[SeriesRow]


class Checkpoint(BaseModel):
    """The served checkpoint."""

    file: str
    run: str
    sha256: str


class ModelCard(BaseModel):
    """The answer of `GET /api/model`."""

    name: str
    classes: list[str]
    input_size: int
    in_chans: int
    mean: list[float]
    std: list[float]
    reads_dicom: bool
    dicom_windows: str | None = Field(description="the HU window(s) the model was trained with")
    dicom_window_names: list[str] | None
    window_presets: list[str]
    checkpoint: Checkpoint
    decision: Decision
    tta: bool
    ensemble: list[str] = Field(
        default_factory=list, description="the checkpoints averaged, when several are served"
    )
    notice: str
    segmenter: str | None
    patient_aggregation: str
    limits: dict[str, int]


class Health(BaseModel):
    """The answer of `GET /healthz`."""

    status: str

"""One pydantic model per config section; field descriptions are the reference documentation."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contract.ids import Identifier
from edge.alarms import AlarmHookConfig
from edge.labels import CLASS_NAMES

Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]
PPEItem = Literal["helmet", "vest"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: URL schemes the frame reader opens (edge/frames/sources.py imports this): anything else is refused here.
STREAM_SCHEMES = ("rtsp", "rtsps")
#: Camera sources that are not file paths (files resolve against the config file's folder).
STREAM_PREFIXES = (*(f"{scheme}://" for scheme in STREAM_SCHEMES), "usb:")
Provider = Literal["tensorrt", "cuda", "openvino", "cpu"]
DEFAULT_PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")
DEFAULT_PPE: tuple[PPEItem, ...] = ("helmet", "vest")


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, so a typo never silently becomes a default.

    NaN and infinity are refused too: NaN passes no range check truthfully (`fps: .nan` would be reported
    as "less than or equal to 60") and no setting means "forever".
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class SiteSection(Strict):
    """Which site this edge box watches."""

    id: Identifier = Field(description="Short site id used in MQTT topics, e.g. 'kt-tower-b'.")
    name: str = Field(description="Human-readable site name shown on the dashboard.")
    timezone: str = Field("Asia/Hong_Kong", description="IANA time zone for schedules and reports.")
    edge_id: Identifier = Field("edge-1", description="Id of this edge box within the site.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Asia/Hong_Kong')"
            ) from None
        return value


class Schedule(Strict):
    """When a rule or zone is active, in the site's time zone. Start after end wraps past midnight."""

    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS),
        description="Days of the week on which the schedule applies.",
    )
    start: time = Field(time(0, 0), description="Start of the active window, HH:MM.")
    end: time = Field(time(23, 59, 59), description="End of the active window, HH:MM (inclusive).")


class ZoneConfig(Strict):
    """A polygon in the camera view, in normalised coordinates (0..1, origin top-left)."""

    id: Identifier = Field(description="Zone id, unique within the camera; used in events and alarm topics.")
    name: str | None = Field(None, description="Display name; defaults to the id.")
    polygon: list[Point] = Field(description="Vertices [[x, y], ...] normalised to the frame size.")
    entry_forbidden: bool = Field(
        True, description="A person inside the zone is a violation (a danger zone). False: PPE zone only."
    )
    require: list[PPEItem] = Field(
        default_factory=list, description="PPE required inside this zone in addition to the camera's."
    )
    anchor: Literal["bottom_center", "center", "top_center"] = Field(
        "bottom_center", description="Point of the person box tested against the polygon (feet by default)."
    )
    min_dwell_s: float = Field(
        0.0, ge=0, description="Seconds a person must stay inside before entry counts."
    )
    schedules: list[Schedule] = Field(
        default_factory=list, description="When the zone is active; empty means always."
    )

    @field_validator("polygon")
    @classmethod
    def _polygon_shape(cls, value: list[Point]) -> list[Point]:
        if len(value) < 3:
            raise ValueError("needs at least 3 points")
        from shapely.geometry import Polygon

        poly = Polygon(value)
        if not poly.is_valid or poly.area <= 0:
            raise ValueError("polygon must not cross itself and must enclose an area")
        return value


class CameraRules(Strict):
    """Per-camera overrides of the site-wide rules; unset fields inherit from `rules`."""

    require: list[PPEItem] | None = Field(None, description="PPE required everywhere in this view.")
    debounce_s: float | None = Field(None, ge=0, description="Override of rules.debounce_s.")
    min_share: float | None = Field(None, gt=0, le=1, description="Override of rules.min_share.")
    cooldown_s: float | None = Field(None, ge=0, description="Override of rules.cooldown_s.")
    zone_entry_cooldown_s: float | None = Field(
        None, ge=0, description="Override of rules.zone_entry_cooldown_s."
    )
    schedules: list[Schedule] | None = Field(None, description="Override of rules.schedules.")
    missing_when_unseen: bool | None = Field(None, description="Override of rules.missing_when_unseen.")
    ppe_window_s: float | None = Field(None, gt=0, le=60, description="Override of rules.ppe_window_s.")
    ppe_min_absent_share: float | None = Field(
        None, gt=0, le=1, description="Override of rules.ppe_min_absent_share."
    )
    ppe_absent_confidence: float | None = Field(
        None, ge=0, lt=1, description="Override of rules.ppe_absent_confidence."
    )
    ppe_absent_dominance: float | None = Field(
        None, ge=1, description="Override of rules.ppe_absent_dominance."
    )


class TilingConfig(Strict):
    """SAHI-style slicing for wide views where workers are tiny: slices plus the full frame, merged by NMS.

    The older spelling of `cameras[].detect.tiling`, still read (carried over when a camera sets it)."""

    enabled: bool = Field(
        False, description="Run the detector on overlapping slices as well as the full frame."
    )
    rows: int = Field(2, ge=1, le=8, description="Slices vertically.")
    cols: int = Field(2, ge=1, le=8, description="Slices horizontally.")
    overlap: float = Field(0.2, ge=0, lt=0.5, description="Overlap between neighbouring slices, as a share.")


#: Bounds of `cameras[].detect.input` (pixels, long side of the model input).
MIN_DETECT_INPUT, MAX_DETECT_INPUT = 160, 4096
#: The detector's stride: every model input side is a multiple of it (YOLOv8's largest feature map step).
INPUT_STRIDE = 32


class TileGrid(Strict):
    """A slicing of the frame: rows x cols overlapping slices, each detected as well as the full frame."""

    rows: int = Field(2, ge=1, le=8, description="Slices vertically.")
    cols: int = Field(2, ge=1, le=8, description="Slices horizontally.")
    overlap: float = Field(0.2, ge=0, lt=0.5, description="Overlap between neighbouring slices, as a share.")


class DetectConfig(Strict):
    """At what resolution one camera's frames are detected: the model input size, and slicing.

    `auto` is resolved when the first frame arrives, from its size, by the rule in
    `edge/detections/resolution.py` (docs/cameras.md), and logged; `sitesentry camera check` measures the
    options on the camera's own frames.
    """

    input: Literal["auto"] | int = Field(
        "auto",
        description="Long side of the model input in pixels, a multiple of 32 (e.g. 640), at most the frame's"
        " own size (larger is capped to it); auto: picked from the frame size (docs/cameras.md).",
    )
    tiling: Literal["auto", "off"] | TileGrid = Field(
        "auto",
        description="Detect overlapping slices as well as the full frame: {rows, cols, overlap}, off, or auto"
        " (slices only where the model cannot take a larger input: docs/cameras.md).",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _input_size(cls, value: object) -> object:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected auto or a size in pixels such as 640, not {value!r}")
        if not MIN_DETECT_INPUT <= value <= MAX_DETECT_INPUT or value % INPUT_STRIDE:
            raise ValueError(
                f"{value} px: the model input's long side must be a multiple of {INPUT_STRIDE} from"
                f" {MIN_DETECT_INPUT} to {MAX_DETECT_INPUT} (e.g. 416, 640, 960, 1280)"
            )
        return value

    @field_validator("tiling", mode="before")
    @classmethod
    def _tiling_word(cls, value: object) -> object:
        if value is False:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if isinstance(value, str) and value not in ("auto", "off"):
            raise ValueError(f"expected auto, off or {{rows, cols, overlap}}, not {value!r}")
        if isinstance(value, dict):
            # Validated here so an error names `tiling: rows` rather than every branch of the union.
            try:
                return TileGrid.model_validate(value)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
        if not isinstance(value, str | TileGrid):
            raise ValueError(f"expected auto, off or {{rows, cols, overlap}}, not {value!r}")
        return value


class CameraConfig(Strict):
    """One camera: where frames come from, its zones and rule overrides."""

    id: Identifier = Field(
        description="Camera id, unique within the site; used in topics and evidence names."
    )
    name: str | None = Field(None, description="Display name; defaults to the id.")
    source: str = Field(
        description="rtsp://... (read over TCP), a video file path, or 'usb:N' for a USB camera index."
    )
    enabled: bool = Field(True, description="Disabled cameras are not opened.")
    fps: float = Field(
        5.0, gt=0, le=60, description="Frames per second analysed at most; extra frames are skipped."
    )
    realtime: bool = Field(
        True,
        description=(
            "Video files only: pace at their own frame rate (False: as fast as analysis, no drops; rules and"
            " evidence then run on the file's own timeline from when it was opened)."
        ),
    )
    loop: bool = Field(False, description="Video files only: start again at the end.")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Danger and PPE zones in this view.")
    rules: CameraRules = Field(default_factory=CameraRules, description="Overrides of the site-wide rules.")
    tiling: TilingConfig = Field(
        default_factory=TilingConfig,
        description="Older spelling of `detect.tiling` (enabled: true -> its rows x cols; false -> off).",
    )
    detect: DetectConfig = Field(
        default_factory=DetectConfig, description="Detector input size and slicing for this view."
    )
    decoder: Literal["software", "nvv4l2"] = Field(
        "software",
        description=(
            "How RTSP video is decoded. software: OpenCV's FFmpeg on the CPU (any machine). nvv4l2: the"
            " Jetson hardware decoder (NVDEC) through a GStreamer pipeline; needs JetPack's GStreamer plugins"
            " and an OpenCV built with GStreamer (`sitesentry doctor` says whether this box has both)."
        ),
    )

    @property
    def is_stream(self) -> bool:
        """True when the source is a network stream or USB camera rather than a file path."""
        return self.source.startswith(STREAM_PREFIXES)

    @field_validator("source")
    @classmethod
    def _readable_scheme(cls, value: str, info: ValidationInfo) -> str:
        # `config check` must refuse what the reader cannot open, or `run` fails on a config said to be OK.
        if "://" in value:
            scheme = value.split("://", 1)[0].strip().lower()
            if scheme not in STREAM_SCHEMES:
                camera = f"camera {info.data['id']!r}: " if "id" in info.data else ""
                raise ValueError(
                    f"{camera}{scheme}:// sources are not supported; use rtsp://..., rtsps://..., a video"
                    " file path or usb:N (most HTTP cameras also offer an RTSP stream)"
                )
        return value

    @model_validator(mode="after")
    def _decoder_for_rtsp(self) -> CameraConfig:
        if self.decoder != "software" and not self.source.lower().startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"decoder {self.decoder} reads rtsp:// sources only; use decoder: software here")
        return self

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraConfig:
        seen: set[str] = set()
        for zone in self.zones:
            if zone.id in seen:
                raise ValueError(f"zone id {zone.id!r} is used twice")
            seen.add(zone.id)
        return self

    @model_validator(mode="after")
    def _older_tiling(self) -> CameraConfig:
        """Carry an older `tiling:` section into `detect.tiling`, so the runtime reads one place."""
        if "tiling" not in self.model_fields_set:
            return self
        if "tiling" in self.detect.model_fields_set:
            raise ValueError("tiling is set twice: keep detect.tiling and remove the older `tiling:` section")
        old = self.tiling
        grid: TileGrid | Literal["off"] = (
            TileGrid(rows=old.rows, cols=old.cols, overlap=old.overlap) if old.enabled else "off"
        )
        self.detect = self.detect.model_copy(update={"tiling": grid})
        return self


class ModelConfig(Strict):
    """The detector: an ONNX file with ultralytics metadata, its thresholds and execution providers."""

    type: Literal["auto", "onnxrt", "openvino", "tensorrt"] = Field(
        "auto",
        description=(
            "Detector backend. auto: an OpenVINO IR (.xml) -> openvino; an NVIDIA GPU with `tensorrt`"
            " and `cuda-python` importable and `providers` listing tensorrt -> tensorrt (native engine); an"
            " NVIDIA GPU with ONNX Runtime's TensorRT or CUDA provider that `providers` asks for -> onnxrt on"
            " the GPU; the `openvino` package installed -> openvino (about 2x ONNX Runtime on x86 CPUs);"
            " else onnxrt. The choice and why are logged (`sitesentry doctor` shows it)."
        ),
    )
    path: Path = Field(
        Path("models/ppe-yolo/model.onnx"),
        description="Detector model file: ONNX (any backend) or OpenVINO IR .xml (openvino; the INT8 one).",
    )
    device: str = Field("CPU", description="OpenVINO device (CPU, GPU for an Intel iGPU); openvino only.")
    precision: Literal["f32", "bf16", "f16"] = Field(
        "f32",
        description=(
            "OpenVINO compute precision for float layers (openvino only). bf16 is faster on CPUs with"
            " AVX512-BF16 or AMX but moves scores by up to 0.08; INT8 comes from the model file instead."
        ),
    )
    confidence: dict[str, Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: {"person": 0.35, "helmet": 0.3, "head": 0.3, "vest": 0.3, "no_vest": 0.3},
        description="Minimum confidence per class name; classes not listed use `default_confidence`.",
    )
    default_confidence: float = Field(
        0.3, gt=0, lt=1, description="Threshold for classes not in `confidence`."
    )
    iou: float = Field(0.5, gt=0, lt=1, description="IoU above which same-class boxes are merged by NMS.")
    providers: list[Provider] = Field(
        default_factory=lambda: list(DEFAULT_PROVIDERS),
        description="Execution providers in order of preference; unavailable ones are skipped and logged.",
    )
    threads: int = Field(0, ge=0, description="Inference threads (0: the backend decides).")
    max_batch: int = Field(
        4, ge=1, le=64, description="Cameras batched into one inference when the model allows."
    )
    engine_precision: Literal["fp16", "int8", "fp32"] = Field(
        "fp16",
        description=(
            "TensorRT engine precision (tensorrt; fp16 also sets ONNX Runtime's trt_fp16_enable). int8"
            " quantizes the ONNX with Q/DQ nodes on the `calibration` set first (explicit quantization)."
        ),
    )
    engine_cache: Path | None = Field(
        None,
        description=(
            "Folder of built TensorRT engines, keyed by GPU, TensorRT version, precision, input profile and"
            " ONNX hash (tensorrt; ONNX Runtime's TensorRT provider caches in its onnxrt/ folder). Default:"
            " $XDG_CACHE_HOME/sitesentry/engines (~/.cache/sitesentry/engines)."
        ),
    )
    calibration: Path | None = Field(
        None,
        description=(
            "INT8 calibration set: the folder `sitesentry export --calibration` writes (its calibration.txt"
            " lists the images). Needed for engine_precision int8 only."
        ),
    )

    @field_validator("confidence")
    @classmethod
    def _known_classes(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(CLASS_NAMES))
        if unknown:
            raise ValueError(f"unknown class(es) {', '.join(unknown)}; known: {', '.join(CLASS_NAMES)}")
        return value

    @model_validator(mode="after")
    def _int8_needs_calibration(self) -> ModelConfig:
        if self.engine_precision == "int8" and self.calibration is None:
            raise ValueError(
                "engine_precision int8 needs `calibration`: the folder `sitesentry export --calibration`"
                " writes"
            )
        return self


class RulesConfig(Strict):
    """Site-wide violation rules; cameras may override them."""

    require: list[PPEItem] = Field(
        default_factory=lambda: list(DEFAULT_PPE), description="PPE required everywhere on site."
    )
    debounce_s: float = Field(
        1.0, ge=0, description="A violation must hold this long before an event starts."
    )
    min_share: float = Field(
        0.6,
        gt=0,
        le=1,
        description="...and be seen in at least this share of frames over the debounce window.",
    )
    end_after_s: float = Field(
        2.0, gt=0, description="An event ends after the violation is unseen this long."
    )
    cooldown_s: float = Field(
        30.0, ge=0, description="After a PPE event ends, the same person and rule stay quiet this long."
    )
    zone_entry_cooldown_s: float = Field(
        5.0,
        ge=0,
        description=(
            "After a zone_entry event ends, the same person (same track, or a box at the same spot) and"
            " zone stay quiet this long; short, since each new entry is a new danger."
        ),
    )
    update_every_s: float = Field(
        10.0, gt=0, description="Seconds between update messages of an ongoing event."
    )
    schedules: list[Schedule] = Field(
        default_factory=list, description="When rules apply; empty means always."
    )
    head_region: float = Field(
        0.3, gt=0, le=1, description="Top share of a person box where the helmet must be."
    )
    torso_region: tuple[float, float] = Field(
        (0.15, 0.7), description="Vertical band [top, bottom] of a person box where the vest must be."
    )

    @field_validator("torso_region")
    @classmethod
    def _torso_band(cls, value: tuple[float, float]) -> tuple[float, float]:
        top, bottom = value
        if not 0 <= top < bottom <= 1:
            raise ValueError("needs 0 <= top < bottom <= 1 (shares of the person box height)")
        return value

    missing_when_unseen: bool = Field(
        True,
        description=(
            "Single photos only (`sitesentry eval --data`, `assign_ppe` per frame): a judged person on whom"
            " neither the item nor its absence is detected counts as missing it. Alerts no longer use it:"
            " they are judged per tracked person over time (ppe_* below), where an item not seen is"
            " never evidence of its absence."
        ),
    )
    ppe_window_s: float = Field(
        1.5,
        gt=0,
        le=60,
        description="Seconds of each tracked person's helmet / vest sightings weighed together; a person"
        " must be tracked this long before they can be judged to miss an item.",
    )
    ppe_min_absent_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Missing only when a confidently seen absence (bare head, no_vest) fills at least this"
        " share of the person's frames in the window (frames where the item is not visible count too).",
    )
    ppe_absent_confidence: float = Field(
        0.4,
        ge=0,
        lt=1,
        description="A bare head / no_vest box counts towards 'missing' from this detector confidence up.",
    )
    ppe_absent_dominance: float = Field(
        3.0,
        ge=1,
        description="...and only when those sightings outnumber every sighting of the item in the window"
        " (any confidence) at least this many times: a helmet seen now and then is a helmet.",
    )
    min_person_px: int = Field(
        40,
        ge=0,
        description="Persons shorter than this as the detector sees them (pixels at the model input: the"
        " frame's pixels times the camera's detect scale) are too small to judge PPE; zones still apply.",
    )
    max_new_events_per_min: int = Field(
        30,
        ge=1,
        description="Per camera: new events beyond this rate are suppressed and counted (camera cuts).",
    )


class EvidenceConfig(Strict):
    """Annotated snapshots and short clips stored for each event."""

    folder: Path = Field(Path("var/evidence"), description="Where snapshots and clips are written.")
    snapshot: bool = Field(True, description="Write an annotated JPEG when an event starts.")
    clip: bool = Field(True, description="Write an MP4 clip around the start of each event.")
    pre_s: float = Field(3.0, ge=0, le=60, description="Seconds of video kept before the event.")
    post_s: float = Field(3.0, ge=0, le=60, description="Seconds of video recorded after the event starts.")
    clip_max_s: float = Field(
        12.0,
        ge=0,
        le=120,
        description="Events that start on one camera while its clip is still recording share that clip "
        "(extended to cover them) up to this length; beyond it a new clip starts. Frames are encoded as "
        "they arrive, so a longer clip costs disk, not memory.",
    )
    clip_fps: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Clips keep at most about this many frames per second. A camera analysed faster (for "
        "tracking) then costs no more to encode and store; one analysed slower keeps every frame.",
    )
    clip_codec: Literal["h264", "mp4v"] = Field(
        "h264",
        description="h264 plays in browsers (dashboard) and is about 4x smaller; it needs PyAV with libx264 "
        "and falls back to mp4v (OpenCV, MPEG-4 part 2) where that is missing.",
    )
    clip_crf: int = Field(
        26, ge=15, le=40, description="H.264 quality: lower is sharper and larger (23 is x264's default)."
    )
    max_pending_clips: int = Field(
        16,
        ge=1,
        le=1000,
        description="Clips recording or waiting for the encoder, over all cameras; beyond this a new event "
        "gets its snapshot but no clip (counted as reason `backlog`), so memory stays bounded.",
    )
    max_pending_mb: float = Field(
        512.0,
        gt=0,
        description="Memory the frames waiting for the clip encoder may hold (MB, over all cameras); beyond "
        "this a new event gets its snapshot but no clip (reason `backlog`). Only reached when the "
        "encoder falls behind the cameras.",
    )
    writer_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Scheduling niceness added to the clip encoder thread (Linux), so encoding never "
        "slows detection on a busy CPU; 0 keeps it equal.",
    )
    jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG quality of snapshots.")
    view_every_s: float = Field(
        60.0,
        ge=0,
        description="Each camera's current view (heads blurred, no boxes) is its MQTT snapshot, for the"
        " dashboard's camera tiles and zone editor: sent at its first frame, as each event starts and this"
        " often (0: only then). Events' annotated snapshots reach the dashboard as evidence.",
    )
    blur_heads: bool = Field(
        True,
        description="Blur heads and faces in stored evidence and the MQTT snapshot (PDPO, Cap. 486; on by "
        "default: set false only where the purpose of collection needs faces).",
    )
    retention_days: float = Field(30.0, gt=0, description="Evidence older than this is deleted.")
    min_free_gb: float = Field(
        1.0, ge=0, description="Oldest evidence is deleted while free disk is below this."
    )


class HardExamplesConfig(Strict):
    """Frames worth labelling, queued for retraining (`sitesentry dataset export-queue`)."""

    enabled: bool = Field(False, description="Queue frames with violations or uncertain detections.")
    folder: Path = Field(Path("var/hard-examples"), description="Where queued frames are written.")
    max_items: int = Field(2000, ge=1, description="Queue bound; the oldest items are evicted first.")
    min_interval_s: float = Field(
        10.0, ge=0, description="Per camera and reason, at most one frame this often."
    )
    uncertain_below: float = Field(
        0.45,
        gt=0,
        lt=1,
        description="A box kept by the thresholds but scoring below this marks the frame uncertain.",
    )


class TlsConfig(Strict):
    """TLS for the MQTT connection."""

    ca_file: Path | None = Field(None, description="CA bundle that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Private key of the client certificate.")
    insecure: bool = Field(False, description="Skip host-name verification (testing only).")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="Oldest TLS version accepted.")


class MqttConfig(Strict):
    """The broker alerts go to. With `host` unset the demo starts an embedded broker on 127.0.0.1."""

    host: str | None = Field(None, description="Broker host; None starts the embedded broker.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(None, description="User name, if the broker needs one.")
    password: SecretStr | None = Field(
        None, description="Password; write ${ENV_VAR} to read it from the environment."
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; None means plain TCP.")
    prefix: str = Field("sitesentry", description="First topic level.")
    client_id: str | None = Field(None, description="MQTT client id; defaults to sitesentry-<site>-<edge>.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keep-alive interval.")
    outbox: Path = Field(Path("var/outbox.sqlite3"), description="Durable outbox of unacknowledged messages.")
    outbox_max_messages: int = Field(
        100_000, ge=100, description="Outbox bound; oldest updates dropped first."
    )
    heartbeat_s: float = Field(30.0, gt=0, description="Seconds between heartbeat messages.")
    session_expiry_s: int = Field(
        86_400,
        ge=0,
        le=4_294_967_295,
        description="MQTT 5 session expiry: how long the broker keeps our session and queued messages while "
        "we are away.",
    )
    inflight_window: int = Field(
        16,
        ge=1,
        le=1000,
        description="Outbox messages published but not yet acknowledged, at most (kept 4 below the broker's "
        "receive maximum, 20 by default in Mosquitto).",
    )
    outbox_fsync: bool = Field(
        True, description="Sync each outbox write to disk (survives power cuts); False survives crashes only."
    )
    alarm_ttl_s: int = Field(
        60,
        ge=1,
        description="MQTT 5 message expiry of an alarm's retained `on` state, sent again every half of it"
        " while the edge lives: a siren subscribing after the edge died gets no stale `on` (MQTT 3.1.1: no"
        " expiry).",
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First wait before reconnecting to the broker.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts.")
    control_max_bytes: int = Field(
        65_536,
        ge=256,
        description="Control messages larger than this are rejected (a `set_zones` command with many "
        "detailed polygons can take tens of KB).",
    )
    control_clients: list[str] = Field(
        default_factory=list,
        description="Client ids allowed to send control commands (MQTT 5 user property `client_id`). "
        '"*" accepts any sender, over MQTT 3.1.1 too: then the broker\'s ACL on the control topic is the '
        "only lock (the demo uses it with the embedded loopback broker).",
    )
    push_evidence: bool = Field(
        True,
        description="Send every snapshot and clip to the dashboard over MQTT (`.../edges/<edge>/evidence`, "
        "in 256 KiB chunks, through the outbox), since a dashboard cannot fetch files from an edge behind "
        "NAT. False keeps evidence on the edge box only.",
    )
    evidence_backlog_mb: float = Field(
        500.0,
        gt=0,
        description="Evidence files waiting to be sent, at most (MB); past it the oldest waiting clips, then "
        "snapshots, are dropped and counted, so a backlog after an outage never delays or displaces alerts.",
    )

    @model_validator(mode="after")
    def _reconnect_range(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s:g}) is greater than reconnect_max_s "
                f"({self.reconnect_max_s:g})"
            )
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix_levels(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", value):
            raise ValueError(
                "topic prefix: levels of letters, digits, '_' or '-' separated by '/', no wildcards"
            )
        return value


class MetricsConfig(Strict):
    """Prometheus metrics endpoint."""

    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Address the metrics endpoint binds to.")
    port: int = Field(9108, ge=0, le=65535, description="Port of the metrics endpoint (0: pick a free one).")


class SiteConfig(Strict):
    """A whole site's configuration: one YAML file per site."""

    site: SiteSection = Field(description="The site this edge box watches.")
    cameras: list[CameraConfig] = Field(description="Cameras on this edge box (at least one).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Detector model and thresholds.")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Site-wide violation rules.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Snapshots and clips.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Alert delivery over MQTT.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics.")
    hard_examples: HardExamplesConfig = Field(
        default_factory=HardExamplesConfig,
        description="Frames saved for labelling (personal data: see PDPO).",
    )
    alarms: AlarmHookConfig | None = Field(
        None, description="Local alarm on the edge box (a command and/or a sound) when a violation starts."
    )

    @field_validator("cameras")
    @classmethod
    def _some_cameras(cls, value: list[CameraConfig]) -> list[CameraConfig]:
        if not value:
            raise ValueError("at least one camera is needed (an edge box without cameras watches nothing)")
        if not any(camera.enabled for camera in value):
            raise ValueError(
                "every camera has enabled: false, so this edge box would watch nothing; enable at least one"
                " (control can pause an enabled camera's analysis without stopping the edge)"
            )
        return value

    @model_validator(mode="after")
    def _unique_cameras(self) -> SiteConfig:
        seen: set[str] = set()
        for camera in self.cameras:
            if camera.id in seen:
                raise ValueError(f"camera id {camera.id!r} is used twice")
            seen.add(camera.id)
        return self

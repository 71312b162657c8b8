"""Pre- and post-processing in NumPy/OpenCV: letterbox, YOLO output decode and class-aware NMS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from edge.dataflow import Detections

PAD_VALUE = 114  # the grey ultralytics pads with; matching it keeps parity with its own predictions


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image was scaled and padded into the model input, to map boxes back."""

    gain: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to size (h, w), centred, as ultralytics does for fixed inputs."""
    h0, w0 = image.shape[:2]
    h, w = size
    gain = min(h / h0, w / w0)
    new_w, new_h = round(w0 * gain), round(h0 * gain)
    dw, dh = (w - new_w) / 2, (h - new_h) / 2
    if (new_w, new_h) != (w0, h0):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, Letterbox(gain, left, top, w0, h0)


def to_blob(images: list[np.ndarray], dtype: type = np.float32) -> np.ndarray:
    """Stack letterboxed BGR images into an NCHW RGB tensor scaled to 0..1."""
    batch = np.stack(images)[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=dtype) / np.asarray(255, dtype)


def decode(
    output: np.ndarray,
    box: Letterbox,
    names: tuple[str, ...],
    thresholds: np.ndarray,
    iou: float,
    max_det: int = 300,
) -> Detections:
    """Turn one image's raw YOLO output (4 + nc, anchors) into thresholded, NMS-filtered pixel boxes."""
    scores_all = output[4:].T  # (anchors, nc)
    class_id = scores_all.argmax(1)
    confidence = scores_all[np.arange(len(class_id)), class_id]
    keep = confidence >= thresholds[class_id]
    if not keep.any():
        return Detections.empty(names)
    xywh = output[:4].T[keep]
    confidence, class_id = confidence[keep], class_id[keep]
    xyxy = np.empty_like(xywh)
    xyxy[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    xyxy[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    xyxy = scale_back(xyxy, box)
    kept = class_aware_nms(xyxy, confidence, class_id, iou, max_det)
    return Detections(
        xyxy[kept].astype(np.float32),
        confidence[kept].astype(np.float32),
        class_id[kept].astype(np.int32),
        names,
    )


def scale_back(xyxy: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map boxes from letterboxed model input back to the original image, clipped to its bounds."""
    out = xyxy.copy()
    out[:, [0, 2]] = ((out[:, [0, 2]] - box.pad_x) / box.gain).clip(0, box.width)
    out[:, [1, 3]] = ((out[:, [1, 3]] - box.pad_y) / box.gain).clip(0, box.height)
    return out


def class_aware_nms(
    xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, iou: float, max_det: int = 300
) -> np.ndarray:
    """Return indices kept by per-class NMS (OpenCV's batched NMS), highest confidence first."""
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    xywh = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    raw = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), confidence.tolist(), class_id.tolist(), score_threshold=0.0, nms_threshold=float(iou)
    )
    kept = np.asarray(raw, dtype=np.int64).reshape(-1)
    kept = kept[np.argsort(-confidence[kept], kind="stable")]
    return kept[:max_det]


def threshold_vector(
    names: tuple[str, ...], per_class: Mapping[str, float] | None, default: float
) -> np.ndarray:
    """Build the per-class confidence threshold array in model class order."""
    per_class = per_class or {}
    return np.asarray([per_class.get(name, default) for name in names], dtype=np.float32)


def merge(parts: list[Detections], iou: float, max_det: int = 300) -> Detections:
    """Concatenate detections from several passes over one image and remove duplicates by class-aware NMS."""
    names = parts[0].names
    xyxy = np.concatenate([p.xyxy for p in parts])
    confidence = np.concatenate([p.confidence for p in parts])
    class_id = np.concatenate([p.class_id for p in parts])
    kept = class_aware_nms(xyxy, confidence, class_id, iou, max_det)
    return Detections(xyxy[kept], confidence[kept], class_id[kept], names)

"""The detector interface every backend implements, and what it reports about its model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.dataflow import Detections


class ModelError(ValueError):
    """A model file that cannot be used as a SiteSentry detector (message names the file and the problem)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: its classes, input size, batch axis, metadata and the providers it got."""

    name: str
    version: str
    names: tuple[str, ...]
    imgsz: tuple[int, int]  # (height, width)
    batch: int | None  # None: dynamic batch axis
    metadata: dict[str, str] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)


class Detector(Protocol):
    """A backend: images in, boxes in pixel coordinates of each image out."""

    info: ModelInfo

    @property
    def dynamic_input(self) -> bool:
        """True when the model takes any stride-aligned input size (a camera may ask for another)."""
        ...

    @property
    def stride(self) -> int:
        """The model's largest stride: every input side is a multiple of it."""
        ...

    def detect(self, image: np.ndarray) -> Detections:
        """Detect objects in one BGR image."""
        ...

    def detect_batch(self, images: Sequence[np.ndarray], long_side: int | None = None) -> list[Detections]:
        """Detect objects in several BGR images, batched when the model allows, at an input of long_side."""
        ...

    def input_size(self, images: Sequence[np.ndarray], long_side: int | None = None) -> tuple[int, int]:
        """The model input (height, width) these images would be letterboxed into."""
        ...

    def preprocess(
        self, images: Sequence[np.ndarray], long_side: int | None = None
    ) -> tuple[np.ndarray, list[Any]]:
        """Turn images into the model's input batch, plus what is needed to map boxes back."""
        ...

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the model on a prepared batch."""
        ...

    def postprocess(self, output: np.ndarray, boxes: list[Any]) -> list[Detections]:
        """Decode raw output into per-image detections."""
        ...

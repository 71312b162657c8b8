"""Which model input size and slicing a camera's frames are detected at (`cameras[].detect`), resolved from
the frame size once the first frame arrives; every backend shares it through YoloDetector."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.config.models import INPUT_STRIDE, DetectConfig, TileGrid

# What `detect.input: auto` picks, from the cost and persons found per option on real footage
# (docs/benchmarks/resolution.json). This model (trained at 416 px) finds the most persons when they are
# about 80-300 px tall at its input and loses large ones beyond: the frame's own size finds fewer persons than
# 640 on 848x480 close-ups (2.0 against 2.7 per frame) and on a 1696x960 wide view (9.1 against 12.2), while
# small frames gain from it (640x480: 6.0 persons large enough to judge PPE per frame against 4.7 at 416).
#: Frames up to this long side go in at their own size (never below the model's); longer ones at least at it.
AUTO_MIN_INPUT = 640
#: Beyond AUTO_MIN_INPUT, the input is this share of the frame's long side: what `camera check` recommends on
#: the widest view measured (960 for 3392x1920: 94% of the persons 1280 finds at 62% of its cost; on 1696x960
#: it recommends 640, the minimum).
AUTO_SCALE = 0.28
#: Longest input `auto` picks: about 7x the cost of 416 px, the most a default should ask of a CPU.
AUTO_MAX_INPUT = 1280
#: Slices `tiling: auto` uses on a fixed-input model once the frame is at least this many times its input.
AUTO_TILES = TileGrid(rows=2, cols=2, overlap=0.2)
AUTO_TILE_RATIO = 2.0


@dataclass(frozen=True)
class DetectPlan:
    """How frames of one size from one camera are detected: the full-frame model input, and slices."""

    frame: tuple[int, int]  # (width, height) of the frames this plan is for
    long_side: int  # long side asked of the model input (each image is scaled to fit it)
    input_hw: tuple[int, int]  # the model input (height, width) of the full frame
    tiles: TileGrid | None  # slices detected as well as the full frame; None: the full frame only
    reason: str
    # Each slice's (x1, y1, x2, y2) window in the frame and its model-input pixels per frame pixel.
    slices: tuple[tuple[tuple[int, int, int, int], float], ...] = ()

    @property
    def gain(self) -> float:
        """Model-input pixels per frame pixel for the full frame."""
        width, height = self.frame
        return min(self.input_hw[0] / height, self.input_hw[1] / width)

    def heights_at_input(self, boxes: np.ndarray) -> np.ndarray:
        """Each (N, 4) frame-pixel xyxy box's height as the model saw it: scaled by the gain of the pass
        that saw it largest (a slice holding the whole box, else the full frame); `rules.min_person_px`
        is compared with this."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        gains = np.full(len(boxes), self.gain, np.float32)
        for (x1, y1, x2, y2), gain in self.slices:
            inside = (boxes[:, 0] >= x1) & (boxes[:, 1] >= y1) & (boxes[:, 2] <= x2) & (boxes[:, 3] <= y2)
            gains = np.where(inside, np.maximum(gains, gain), gains)
        return (boxes[:, 3] - boxes[:, 1]) * gains

    @property
    def passes(self) -> int:
        """Inferences per frame: the full frame plus one per slice."""
        return 1 + (self.tiles.rows * self.tiles.cols if self.tiles else 0)

    def describe(self) -> str:
        """A short label for logs, stats and reports, e.g. `640x352` or `416x256 + 2x2 tiles`."""
        size = f"{self.input_hw[1]}x{self.input_hw[0]}"
        if self.tiles is None:
            return size
        return f"{size} + {self.tiles.rows}x{self.tiles.cols} tiles (overlap {self.tiles.overlap:g})"


def tile_windows(
    width: int, height: int, rows: int, cols: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Return (x1, y1, x2, y2) pixel windows covering the frame in rows x cols with the given overlap."""
    tile_w = width / (cols - (cols - 1) * overlap)
    tile_h = height / (rows - (rows - 1) * overlap)
    windows = []
    for r in range(rows):
        for c in range(cols):
            x1 = round(c * tile_w * (1 - overlap))
            y1 = round(r * tile_h * (1 - overlap))
            windows.append((x1, y1, min(width, round(x1 + tile_w)), min(height, round(y1 + tile_h))))
    return windows


def fit_input(width: int, height: int, long_side: int, stride: int) -> tuple[int, int]:
    """The smallest stride-aligned (height, width) holding a width x height image scaled to fit long_side."""
    gain = min(long_side / height, long_side / width)
    return math.ceil(round(height * gain) / stride) * stride, math.ceil(round(width * gain) / stride) * stride


def resolve_plan(
    frame: tuple[int, int],
    setting: DetectConfig,
    *,
    imgsz: tuple[int, int],
    stride: int,
    dynamic: bool,
) -> DetectPlan:
    """Resolve a camera's `detect` setting for frames of size (width, height), by the rule in docs/cameras.md.

    A dynamic-shape model runs at `detect.input` (never above the frame's own size, nor below the model's
    own for auto); `auto` follows auto_long_side, or is the model's own size when slicing.
    Slices cost more than a larger input for the same magnification (docs/benchmarks/resolution.json), so
    `tiling: auto` slices only on a fixed-input model whose input is AUTO_TILE_RATIO times smaller than
    the frame.
    """
    width, height = frame
    frame_long = max(width, height)
    model_long = max(imgsz)
    reasons: list[str] = []
    tiles = _tiles(setting.tiling, frame_long, model_long, dynamic, reasons)
    if not dynamic:
        if setting.input not in ("auto", model_long):
            reasons.append(f"detect.input {setting.input} ignored: the model's input is fixed")
        else:
            reasons.append("the model's input is fixed")
        slices = _slice_gains(frame, tiles, lambda w, h: imgsz)
        return DetectPlan(frame, model_long, imgsz, tiles, "; ".join(reversed(reasons)), slices)
    long_side = _long_side(setting.input, tiles is not None, frame_long, model_long, reasons)
    reasons.reverse()  # the input first, then why slices are on or off
    slices = _slice_gains(frame, tiles, lambda w, h: fit_input(w, h, long_side, stride))
    return DetectPlan(
        frame, long_side, fit_input(width, height, long_side, stride), tiles, "; ".join(reasons), slices
    )


def _slice_gains(
    frame: tuple[int, int], tiles: TileGrid | None, input_hw: Callable[[int, int], tuple[int, int]]
) -> tuple[tuple[tuple[int, int, int, int], float], ...]:
    if tiles is None:
        return ()
    out = []
    for window in tile_windows(*frame, tiles.rows, tiles.cols, tiles.overlap):
        tw, th = window[2] - window[0], window[3] - window[1]
        ih, iw = input_hw(tw, th)
        out.append((window, min(ih / th, iw / tw)))
    return tuple(out)


def _tiles(
    setting: Literal["auto", "off"] | TileGrid,
    frame_long: int,
    model_long: int,
    dynamic: bool,
    reasons: list[str],
) -> TileGrid | None:
    if isinstance(setting, TileGrid):
        reasons.append(f"{setting.rows}x{setting.cols} tiles set by detect.tiling")
        return setting
    if setting == "off":
        return None
    if dynamic:
        reasons.append("no tiles: a larger input finds as many persons for less")
        return None
    if frame_long >= AUTO_TILE_RATIO * model_long:
        reasons.append(
            f"{AUTO_TILES.rows}x{AUTO_TILES.cols} tiles: the frame is over {AUTO_TILE_RATIO:g}x the input"
        )
        return AUTO_TILES
    reasons.append(f"no tiles: the frame is under {AUTO_TILE_RATIO:g}x the model input")
    return None


def _long_side(
    setting: Literal["auto"] | int, tiled: bool, frame_long: int, model_long: int, reasons: list[str]
) -> int:
    # At the frame's own long side the frame goes in unscaled (gain 1), padded up to the stride.
    if setting != "auto":
        cap = max(frame_long, model_long)
        if setting > cap:
            reasons.append(f"detect.input {setting} capped at the frame's own size")
            return cap
        reasons.append(f"set by detect.input {setting}")
        return setting
    if tiled:
        reasons.append("auto: the model's own size, as slices magnify")
        return model_long
    return auto_long_side(frame_long, model_long, reasons)


def auto_long_side(frame_long: int, model_long: int, reasons: list[str] | None = None) -> int:
    """The input long side `detect.input: auto` picks for frames of this long side (rule: constants above)."""
    reasons = reasons if reasons is not None else []
    if frame_long <= model_long:
        reasons.append(f"auto: the model's own size ({model_long}) holds the whole frame")
        return model_long
    if frame_long <= AUTO_MIN_INPUT:
        reasons.append("auto: the frame's own size")
        return frame_long
    scaled = math.ceil(frame_long * AUTO_SCALE / INPUT_STRIDE) * INPUT_STRIDE
    if scaled <= AUTO_MIN_INPUT:
        reasons.append(f"auto: {AUTO_MIN_INPUT} px")
        return AUTO_MIN_INPUT
    if scaled < AUTO_MAX_INPUT:
        reasons.append(f"auto: {AUTO_SCALE:g} of the frame's long side")
        return scaled
    reasons.append(f"auto: {AUTO_MAX_INPUT} px, the auto limit")
    return AUTO_MAX_INPUT

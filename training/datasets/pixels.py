"""Turn a pixel box from a labelling tool's export into a normalised canonical Box, or say why not."""

from __future__ import annotations

import math

from training.datasets.model import Box

#: Tools round and drag a little past the border; boxes within this share of the image are clipped quietly.
EDGE_TOLERANCE = 0.01


class BadBox(ValueError):
    """A box that cannot be imported; the message says what is wrong with it."""


def box_from_xyxy(label: str, x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> Box:
    """Normalise a pixel xyxy box to the image size, clipping slight overshoot; raise BadBox otherwise."""
    if not (width > 0 and height > 0):
        raise BadBox(f"image size {width}x{height} is not positive")
    values = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in values):
        raise BadBox(f"coordinates are not finite: {values}")
    nx1, nx2, ny1, ny2 = x1 / width, x2 / width, y1 / height, y2 / height
    if nx2 <= nx1 or ny2 <= ny1:
        raise BadBox(f"box has no area (x {x1:g}..{x2:g}, y {y1:g}..{y2:g})")
    low, high = -EDGE_TOLERANCE, 1 + EDGE_TOLERANCE
    if min(nx1, ny1) < low or max(nx2, ny2) > high:
        raise BadBox(
            f"coordinates out of range: box x {x1:g}..{x2:g}, y {y1:g}..{y2:g} "
            f"in a {width:g}x{height:g} image"
        )
    nx1, ny1 = max(nx1, 0.0), max(ny1, 0.0)
    nx2, ny2 = min(nx2, 1.0), min(ny2, 1.0)
    return Box(label, (nx1 + nx2) / 2, (ny1 + ny2) / 2, nx2 - nx1, ny2 - ny1)


def rotated_bounds(
    x1: float, y1: float, x2: float, y2: float, degrees: float, pivot: tuple[float, float]
) -> tuple[float, float, float, float]:
    """Axis-aligned xyxy bounds of a box rotated clockwise (image y points down) about a pivot point.

    CVAT rotates about the box centre; Label Studio about its top-left corner.
    """
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    px, py = pivot
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    xs = [px + (x - px) * cos - (y - py) * sin for x, y in corners]
    ys = [py + (x - px) * sin + (y - py) * cos for x, y in corners]
    return min(xs), min(ys), max(xs), max(ys)

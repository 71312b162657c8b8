"""Where text tags go on an annotated frame, so that no tag covers another: a small greedy layout."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np

#: x1, y1, x2, y2 in pixels; x2 and y2 are exclusive, so two rects that share an edge do not overlap.
Rect = tuple[int, int, int, int]

MAX_RINGS = (
    8  # shifts tried around each spot (in quarter tag widths and tag heights) before scanning the frame
)


def overlaps(a: Rect, b: Rect) -> bool:
    """Return whether two rects share any pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _area(a: Rect, b: Rect) -> int:
    """Return how many pixels two rects share."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def spots_around(box: Rect, width: int, height: int) -> list[tuple[int, int]]:
    """Top-left corners for a width x height tag next to a box, best first: above, below, inside it."""
    x1, y1, x2, y2 = box
    return [
        (x1, y1 - height),  # above, left-aligned: where readers look first
        (x1, y2),  # below
        (x1, y1),  # inside the top edge
        (x2 - width, y1 - height),  # above, right-aligned
        (x2 - width, y2),  # below, right-aligned
        (x1, y2 - height),  # inside the bottom edge
    ]


def _ring(r: int) -> list[tuple[int, int]]:
    """Offsets (in steps) at Chebyshev distance r; vertical shifts first, since tags are wider than tall."""
    if r == 0:
        return [(0, 0)]
    cells = [(i, j) for i in range(-r, r + 1) for j in range(-r, r + 1) if max(abs(i), abs(j)) == r]
    return sorted(cells, key=lambda c: (abs(c[0]), abs(c[1]), c[0], c[1]))


class LabelLayout:
    """Places tags one at a time, most important first; a placed tag never overlaps an earlier one.

    Each tag tries the spots it is given (e.g. `spots_around` its box), then those spots shifted ring by
    ring, and takes the first that lies inside the frame, overlaps no earlier tag, keeps clear of the
    `avoid` rects (the highlighted person) and satisfies `prefer`; failing that, the free spot that covers
    the least of `avoid`. When every nearby spot is taken it scans the whole frame for the free spot
    nearest its first choice; a tag with no free spot anywhere is left out (`place` returns None) rather
    than drawn over another.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.placed: list[Rect] = []

    def reserve(self, rect: Rect) -> None:
        """Mark a rect as taken (a caption drawn by other means)."""
        self.placed.append(rect)

    def _fits(self, rect: Rect) -> bool:
        return (
            rect[0] >= 0
            and rect[1] >= 0
            and rect[2] <= self.width
            and rect[3] <= self.height
            and not any(overlaps(rect, other) for other in self.placed)
        )

    def _candidates(self, size: tuple[int, int], spots: Sequence[tuple[int, int]]) -> Iterator[Rect]:
        w, h = size
        step_x, step_y = max(4, w // 4), h + 1
        for r in range(MAX_RINGS + 1):
            for x, y in spots:
                for i, j in _ring(r):
                    # Clamped into the frame: a tag at the edge slides along it instead of being dropped.
                    cx = min(max(0, x + i * step_x), self.width - w)
                    cy = min(max(0, y + j * step_y), self.height - h)
                    yield cx, cy, cx + w, cy + h

    def place(
        self,
        size: tuple[int, int],
        spots: Sequence[tuple[int, int]],
        avoid: Sequence[Rect] = (),
        prefer: Callable[[Rect], bool] | None = None,
    ) -> Rect | None:
        """Find a free rect of this size (width, height) near the spots, take it and return it."""
        w, h = size
        if w > self.width or h > self.height or not spots:
            return None
        best: tuple[int, int, int] | None = None  # (area over `avoid`, not preferred, order) of `fallback`
        fallback: Rect | None = None
        for order, rect in enumerate(self._candidates(size, spots)):
            if not self._fits(rect):
                continue
            covered = sum(_area(rect, a) for a in avoid)
            rank = (covered, int(prefer is not None and not prefer(rect)), order)
            if rank[:2] == (0, 0):
                fallback = rect
                break
            if best is None or rank < best:
                best, fallback = rank, rect
        if fallback is None:
            fallback = self._nearest_free(size, spots[0])
        if fallback is not None:
            self.placed.append(fallback)
        return fallback

    def _nearest_free(self, size: tuple[int, int], spot: tuple[int, int]) -> Rect | None:
        """The free top-left nearest a spot, over the whole frame (summed-area table of taken pixels)."""
        w, h = size
        taken = np.zeros((self.height, self.width), np.uint8)
        for x1, y1, x2, y2 in self.placed:
            taken[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = 1
        table = cv2.integral(taken)  # (H+1, W+1): table[y, x] = taken pixels above and left of (x, y)
        inside = table[h:, w:] - table[:-h, w:] - table[h:, :-w] + table[:-h, :-w]
        ys, xs = np.nonzero(inside == 0)
        if ys.size == 0:
            return None
        best = int(np.argmin((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2))
        x, y = int(xs[best]), int(ys[best])
        return x, y, x + w, y + h

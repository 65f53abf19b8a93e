"""The part of a seed photo that is searched: a box the user gives (a manifest's ``region``), or the subject
found by a local detector (``IMAGESEARCH_CROP=auto``).

A box is Pillow's ``(left, top, right, bottom)`` in pixels of the original photo with its EXIF orientation
applied, written ``left,top,right,bottom`` (``120,40,860,900``). The detector needs no model weights: it
takes the border of the photo as background (the background prior of Wei et al., "Geodesic saliency using
background priors", ECCV 2012) on a 96-pixel copy, in numpy. A photo whose subject already fills the frame
keeps its whole frame.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

#: A box as Pillow takes it: left, top, right, bottom (right and bottom exclusive).
Box = tuple[int, int, int, int]

#: IMAGESEARCH_CROP values.
CROP_MODES = ("none", "auto")
_BOX_RE = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*")
#: The detector's grid: _GRID x _GRID cells of _CELL x _CELL pixels of a reduced copy of the photo
#: (chosen on bench/bench_matches.py's cluttered photos, another random set than the one it reports on).
_GRID, _CELL = 16, 6
#: Subject cells this many cells from the largest group still count towards its box.
_GROW = 1
#: A found box this share of the frame or more: the subject fills the photo, which is searched whole.
_WHOLE_FRAME_SHARE = 0.7


def parse_box(text: str) -> Box:
    """``left,top,right,bottom`` as a Box; ValueError saying what is wrong."""
    match = _BOX_RE.fullmatch(text)
    if not match:
        raise ValueError(f"region {text!r} is not left,top,right,bottom in whole pixels, e.g. 120,40,860,900")
    left, top, right, bottom = (int(value) for value in match.groups())
    if right <= left or bottom <= top:
        raise ValueError(f"region {text!r} is empty: right must be more than left, and bottom more than top")
    return left, top, right, bottom


def format_box(box: Box) -> str:
    return ",".join(str(value) for value in box)


def box_problem(box: Box, size: tuple[int, int]) -> str | None:
    """Why ``box`` cannot be cut from a photo of ``size`` (width, height), or None."""
    width, height = size
    if box[2] > width or box[3] > height:
        return (f"region {format_box(box)} reaches outside the photo, which is {width}x{height} pixels "
                "(EXIF orientation applied)")
    return None


def subject_box(img: Image.Image) -> Box | None:
    """The box of ``img``'s subject, in ``img``'s pixels; None when the subject fills the frame (or none is
    found): then the whole photo is the search.

    The background prior: a photo's border is mostly background. The photo is cut into a grid of cells,
    each described by its mean colour, its colour spread and its edge energy; a cell unlike every border
    cell (by more than the cells' mean distance plus one standard deviation) is the subject's. The box is
    that of the largest connected group of such cells, with the subject's cells next to it (a cell away)."""
    width, height = img.size
    distance = _distance_to_border(_cell_features(img))
    mask = distance > distance.mean() + distance.std()
    component = _largest_component(mask)
    if component is None:
        return None
    rows, cols = np.nonzero(component)
    near = np.zeros_like(mask)
    near[max(0, rows.min() - _GROW):rows.max() + _GROW + 1, max(0, cols.min() - _GROW):cols.max() + _GROW + 1] = True
    rows, cols = np.nonzero(mask & near)
    cell_w, cell_h = width / _GRID, height / _GRID
    box = (int(cols.min() * cell_w), int(rows.min() * cell_h),
           min(width, int(np.ceil((cols.max() + 1) * cell_w))), min(height, int(np.ceil((rows.max() + 1) * cell_h))))
    if (box[2] - box[0]) * (box[3] - box[1]) >= _WHOLE_FRAME_SHARE * width * height:
        return None
    return box


def _cell_features(img: Image.Image) -> np.ndarray:
    """Per cell of a _GRID x _GRID grid: mean colour, colour spread and edge energy, each scaled to unit spread."""
    side = _GRID * _CELL
    rgb = np.asarray(img.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    grey = rgb.mean(axis=2)
    edges = np.zeros_like(grey)
    edges[1:-1, 1:-1] = np.hypot(grey[2:, 1:-1] - grey[:-2, 1:-1], grey[1:-1, 2:] - grey[1:-1, :-2])
    cells = rgb.reshape(_GRID, _CELL, _GRID, _CELL, 3)
    mean = cells.mean(axis=(1, 3))
    spread = cells.std(axis=(1, 3))
    energy = edges.reshape(_GRID, _CELL, _GRID, _CELL).mean(axis=(1, 3))[..., None]
    features = np.concatenate([mean, spread, energy], axis=2).reshape(_GRID * _GRID, -1)
    return (features - features.mean(axis=0)) / np.maximum(features.std(axis=0), 1e-6)


def _distance_to_border(features: np.ndarray) -> np.ndarray:
    """Per cell: its distance, in feature space, to the nearest border cell (0 for the border itself)."""
    grid = np.arange(_GRID * _GRID).reshape(_GRID, _GRID)
    border = np.unique(np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]]))
    distance = np.sqrt(((features[:, None, :] - features[None, border, :]) ** 2).sum(axis=2)).min(axis=1)
    return distance.reshape(_GRID, _GRID)


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest 4-connected group of True cells of ``mask``, as a mask; None if there is none."""
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        group, stack = [], [start]
        seen[start] = True
        while stack:
            r, c = stack.pop()
            group.append((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < _GRID and 0 <= nc < _GRID and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        if len(group) > len(best):
            best = group
    if not best:
        return None
    component = np.zeros_like(mask, dtype=bool)
    rows, cols = zip(*best, strict=True)
    component[list(rows), list(cols)] = True
    return component

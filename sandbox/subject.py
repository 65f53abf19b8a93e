"""The sandbox's own subject detection, for aliyun's ``Crop=true``: where in a picture is a catalogue product.

The real service finds the product with a detector trained on its catalogue's pictures. The sandbox does
the same in its own way, unlike the pipeline's background prior (pipeline/crop.py) so that
bench/bench_matches.py never grades a detector against itself: it slides square windows of a few sizes over
the picture and takes the window whose best catalogue match is clearly better than the whole picture's. A
clean product photo, whose whole frame already matches best, keeps its whole frame.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sandbox.search import VisualIndex, batch_features, one_blas_thread

#: Window sides, as shares of the picture's shorter side, and how many positions each takes along an axis.
_SCALES = ((0.7, 3), (0.5, 4), (0.35, 5))
#: A window's best match must beat the whole picture's by this much cosine similarity to be the subject.
_MARGIN = 0.02
#: The picture is reduced to this width first: a window is reduced to 64 pixels for its features anyway.
_WORK_WIDTH = 128


def _windows(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The whole picture, then each scale's square windows on an even grid (left, top, right, bottom)."""
    boxes = [(0, 0, width, height)]
    for share, steps in _SCALES:
        side = round(min(width, height) * share)
        for i in range(steps):
            for j in range(steps):
                left, top = round((width - side) * i / (steps - 1)), round((height - side) * j / (steps - 1))
                boxes.append((left, top, left + side, top + side))
    return boxes


def detect_subject(img: Image.Image, index: VisualIndex) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom, in ``img``'s pixels) of the catalogue product ``img`` shows, or
    None when the whole picture is the product."""
    scale = img.width / _WORK_WIDTH
    small = img.resize((_WORK_WIDTH, max(1, round(img.height / scale))), Image.Resampling.BILINEAR)
    boxes = _windows(*small.size)
    features = batch_features([small.crop(box) for box in boxes])
    with one_blas_thread():
        best = (features @ index.features.T).max(axis=1)
    chosen = int(np.argmax(best))
    if best[chosen] < best[0] + _MARGIN:
        return None
    left, top, right, bottom = boxes[chosen]
    return (round(left * scale), round(top * scale), min(img.width, round(right * scale)),
            min(img.height, round(bottom * scale)))

"""Perceptual hash per image, stored for near-duplicate detection and diversity-aware selection.

Dedupe and selection need a compact fingerprint of every image, and re-reading thousands of files at
selection time would be slow, so the hash is computed once during scoring, from the pixels the job
already decoded. It is not a quality metric: the scorer declares no metrics and leaves the 64 hash bits
in `image.embeddings["phash"]` (as 0/1 floats), which the job stores in the `embeddings` table.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from scorers.base import Availability, DecodedImage, Scorer, WeightsUnavailable, register

MODEL = "phash"
BITS = 64


def phash_bits(gray: np.ndarray) -> np.ndarray:
    """The 64 bits (uint8 0/1, most significant first) of OpenCV's DCT pHash of a grayscale image.

    The image is reduced to 32x32 with area averaging first: `cv2.img_hash.pHash` resizes with
    bilinear sampling, which aliases on large images and makes the hash less stable across re-encodes.
    """
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    return np.unpackbits(cv2.img_hash.pHash(small).ravel())


@register
class PerceptualHash(Scorer):
    name = "phash"
    version = "1"
    metrics = ()
    description = "64-bit DCT perceptual hash (OpenCV img_hash) for near-duplicates and diversity; no metric"
    input_size = 256
    per_image = True   # a 32x32 DCT: cheap and thread-safe, so the engine runs it on its decode threads

    def availability(self) -> Availability:
        if not hasattr(cv2, "img_hash"):
            return Availability(False, "cv2.img_hash missing: install opencv-contrib-python-headless")
        return Availability(True)

    def load(self) -> None:
        status = self.availability()
        if not status.ok:
            raise WeightsUnavailable(status.reason)

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        for image in images:
            image.embeddings[MODEL] = phash_bits(image.gray_at(self.input_size)).astype(np.float32)
        return [{} for _ in images]

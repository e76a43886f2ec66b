"""The scorer interface, the registry, and the decoded image every scorer reads.

A scorer turns decoded images into named metric values. It declares its metrics on the class so that
storage, ranking and the UI know each metric's range and direction before any image is scored.
"""
from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import cv2
import numpy as np

_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_COLUMNS = frozenset(
    {"image_id", "path", "status", "error", "width", "height", "bytes", "sha256", "ensemble"}
)


@dataclass(frozen=True)
class Metric:
    """One number a scorer produces per image.

    `min`/`max` are the declared range (None where open). Ranking maps a metric with a closed range
    linearly onto 0..1 and an open one by its percentile in the dataset, then flips it when lower is
    better. `default_weight` is its weight in the default ensemble (0 = shown but not ranked by).
    """

    name: str
    min: float | None
    max: float | None
    higher_is_better: bool
    description: str = ""
    default_weight: float = 1.0

    def __post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name) or self.name in RESERVED_COLUMNS:
            raise ValueError(f"invalid metric name {self.name!r}: use lower_snake_case, not a reserved column")
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"metric {self.name}: min must be below max")
        if self.default_weight < 0:
            raise ValueError(f"metric {self.name}: default_weight must be >= 0")

    @property
    def closed_range(self) -> bool:
        return self.min is not None and self.max is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "min": self.min,
            "max": self.max,
            "higher_is_better": self.higher_is_better,
            "description": self.description,
            "default_weight": self.default_weight,
        }


class WeightsUnavailable(RuntimeError):
    """A scorer's weights are missing and cannot be fetched; the message says why."""


@dataclass
class DecodedImage:
    """One image, decoded once per run and shared by every scorer.

    `rgb` is 8-bit RGB, EXIF orientation applied, at the largest size any active scorer asked for
    (JPEGs are decoded reduced where that suffices). `at()` gives cached smaller copies, so two
    scorers wanting 512 px share one resize. `features` lets scorers share intermediate results within
    a batch (e.g. one CLIP image embedding used by two heads); `embeddings` holds vectors the job
    stores in DuckDB for dedupe and diversity, keyed by model name.
    """

    path: str
    rgb: np.ndarray
    original_size: tuple[int, int]
    format: str | None = None
    source_bits: int = 8
    features: dict[str, Any] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    _resized: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of `rgb`."""
        return self.rgb.shape[1], self.rgb.shape[0]

    def at(self, max_side: int | None) -> np.ndarray:
        """RGB uint8 with the longer side at most `max_side` (never upscaled)."""
        return self._get("rgb", max_side)

    def gray_at(self, max_side: int | None) -> np.ndarray:
        """Grayscale uint8 (BT.601 luma) with the longer side at most `max_side`."""
        return self._get("gray", max_side)

    def _get(self, kind: str, max_side: int | None) -> np.ndarray:
        h, w = self.rgb.shape[:2]
        side = max(h, w) if max_side is None else min(max_side, max(h, w))
        key = (kind, side)
        if key not in self._resized:
            if kind == "gray":
                out = cv2.cvtColor(self._get("rgb", side), cv2.COLOR_RGB2GRAY)
            elif side == max(h, w):
                out = self.rgb
            else:
                scale = side / max(h, w)
                out = shrink(self._smallest_rgb_above(side), (max(1, round(w * scale)), max(1, round(h * scale))))
            self._resized[key] = out
        return self._resized[key]

    def _smallest_rgb_above(self, side: int) -> np.ndarray:
        """The smallest RGB copy already made that is at least `side` long: shrinking from it is cheaper."""
        copies = [a for (kind, s), a in self._resized.items() if kind == "rgb" and s >= side]
        return min(copies, key=lambda a: a.shape[0] * a.shape[1], default=self.rgb)


def shrink(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale to `size` (w, h) with area averaging, fast.

    OpenCV's INTER_AREA is ~20x slower at non-integer ratios than at integer ones, so shrink by the
    largest whole factor with the integer fast path first (cropping at most factor-1 edge pixels), then
    cover the remaining ratio, below 2, with bilinear interpolation, which does not alias there.
    """
    h, w = img.shape[:2]
    factor = int(min(w / size[0], h / size[1]))
    if factor >= 2:
        img = cv2.resize(img[: h // factor * factor, : w // factor * factor], (w // factor, h // factor),
                         interpolation=cv2.INTER_AREA)
    if (img.shape[1], img.shape[0]) == size:
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""

    def __str__(self) -> str:
        return "available" if self.ok else f"unavailable: {self.reason}"


class Scorer(ABC):
    """Base class of every scorer. Subclasses set the ClassVars and implement `score_batch`.

    `__init__` does no I/O; heavy imports (torch, open_clip, insightface) and weight loading happen
    in `load()`, which is idempotent and raises WeightsUnavailable rather than ever using random
    weights. `input_size` is the longest image side the scorer needs (None: full resolution).
    `options` carries run settings some scorers read (e.g. `reference_dir` for identity), each
    declared with a one-line help in `option_help` so the CLI can list and check them; scorers
    ignore keys they do not know. `per_image` scorers (cheap, thread-safe, nothing gained by batching:
    pure numpy/OpenCV) are run by the engine on its decode threads right after each decode, so they
    use every core; model scorers leave it False and get whole batches on the job thread.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    description: ClassVar[str] = ""
    input_size: ClassVar[int | None] = 1024
    per_image: ClassVar[bool] = False
    option_help: ClassVar[Mapping[str, str]] = {}

    def __init__(self, device: str = "cpu", cache_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        self.device = device
        self.cache_dir = cache_dir
        self.options = dict(options or {})

    def run_version(self) -> str:
        """The version stored with each score. Scorers whose output depends on options (e.g. the
        identity reference set) extend it, so changing those options re-scores incrementally."""
        return self.version

    def availability(self) -> Availability:
        """Whether `load()` can succeed, checked cheaply (no model construction)."""
        return Availability(True)

    def load(self) -> None:
        """Load weights and models; idempotent. Raises WeightsUnavailable."""

    def unload(self) -> None:
        """Free models and device memory; `load()` may be called again later."""

    @abstractmethod
    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        """One dict per image with exactly the declared metric names; None where not applicable."""

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return tuple(m.name for m in cls.metrics)


class UnknownScorer(ValueError):
    pass


_REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator adding a scorer to the registry; refuses duplicate scorer or metric names."""
    for attr in ("name", "version", "metrics"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} must define {attr}")
    if cls.name in _REGISTRY:
        raise ValueError(f"scorer name {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    taken = {m.name: other.name for other in _REGISTRY.values() for m in other.metrics}
    names = [m.name for m in cls.metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"scorer {cls.name!r} declares a metric twice")
    for n in names:
        if n in taken:
            raise ValueError(f"metric {n!r} of scorer {cls.name!r} is already declared by {taken[n]!r}")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Scorer]]:
    """All registered scorers by name, in registration order."""
    return dict(_REGISTRY)


def known_options() -> dict[str, str]:
    """Every option some registered scorer reads, with its help line."""
    return {key: text for cls in _REGISTRY.values() for key, text in cls.option_help.items()}


def get_scorer_class(name: str) -> type[Scorer]:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownScorer(f"unknown scorer {name!r}{hint} (known: {', '.join(_REGISTRY)})") from None


def resolve_device(device: str) -> str:
    """Map 'auto' to cuda, then mps, then cpu. Imports torch, so only neural scorers call this."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"

"""Weight presets for common kinds of LoRA dataset.

A preset is a list of (metric name pattern, weight) rules applied over the default weights, first
match wins. Patterns rather than names, so a preset works with whatever scorers are installed: a
rule for face metrics simply matches nothing where no face scorer is registered.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from storage.scores import MetricInfo

PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    # One person: the face must be the subject's, visible, sharp and frontal enough; image quality
    # still counts, taste a little.
    "Portrait / character": (
        ("identity_*", 3.0), ("face_quality", 2.0), ("face_sharpness", 1.5), ("face_frontalness", 1.0),
        ("face_size_ratio", 1.0), ("face_det_score", 1.0), ("aesthetic*", 0.5),
    ),
    # A style or places: no faces expected, so face metrics do not rank; overall look counts double.
    "Style / scenery": (
        ("face_*", 0.0), ("identity_*", 0.0), ("aesthetic*", 2.0), ("clip_iqa_quality", 1.5),
    ),
    # Only defects: blur, noise, compression, exposure, watermarks; nothing about content or taste.
    "Technical quality only": (
        ("face_*", 0.0), ("identity_*", 0.0), ("aesthetic*", 0.0), ("clip_iqa_quality", 0.0),
    ),
}


def preset_weights(name: str, metrics: list[MetricInfo]) -> dict[str, float]:
    """Every metric's weight under preset `name` (metrics no rule matches keep their default)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    weights = {}
    for m in metrics:
        weights[m.name] = next((w for pattern, w in PRESETS[name] if fnmatchcase(m.name, pattern)),
                               m.default_weight)
    return weights

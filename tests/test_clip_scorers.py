"""CLIP scorers through their real loading path, with a small random CLIP the tests build and save.

The real ViT-L/14 weights cannot exist here. A tiny open_clip config (same code paths, 768-d output so
the real aesthetic head fits) is registered, randomly initialised once, saved both as a state dict and
as an OpenAI-style TorchScript archive, and fetched by file:// URL through `scorers.weights.fetch`.
Results on it are meaningless as scores; these tests check plumbing, fidelity to the reference
pipeline given the same weights, batching, sharing, storage and failure handling.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms

from curator.job import ScoringJob
from scorers import base as scorers_base
from scorers.base import DecodedImage, WeightsUnavailable, resolve_device
from scorers.clip import (
    _ENCODERS,
    AESTHETIC_HEAD_L14,
    CLIP_IQA_PROMPTS,
    AestheticScorer,
    ClipConfig,
    ClipIqaScorer,
    OomBackoff,
    aesthetic_head,
    central_strip,
    clip_iqa_probabilities,
    load_clip_model,
    precision_for,
)
from scorers.weights import ChecksumMismatch, WeightSpec
from storage.db import connect
from tests.images import photo, save
from tests.weight_files import SHARED_WEIGHTS, file_spec

TINY = "curator-test-tiny-clip"
TINY_CFG = {"embed_dim": 768, "quick_gelu": True,
            "vision_cfg": {"image_size": 56, "layers": 2, "width": 64, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def openai_style_archive(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Save `state` the way OpenAI ships CLIP: a TorchScript archive whose state dict has the CLIP
    tensors under the same names plus input_resolution/context_length/vocab_size."""
    root = torch.nn.Module()
    tensors = dict(state, input_resolution=torch.tensor(56), context_length=torch.tensor(77),
                   vocab_size=torch.tensor(49408))
    for key, value in tensors.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, torch.nn.Module())
            module = getattr(module, name)
        if value.is_floating_point():
            module.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
        else:
            module.register_buffer(leaf, value.clone())
    torch.jit.script(root).save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY).eval()  # test weights: random on purpose, then saved and reloaded
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, folder / "tiny_state.pt")
    openai_style_archive(state, folder / "tiny_openai.pt")
    torch.manual_seed(1)
    head = aesthetic_head(768)
    torch.save(head.state_dict(), folder / "head.pth")
    return {"folder": folder, "state": state,
            "state_spec": file_spec(folder / "tiny_state.pt", "tiny-clip-state"),
            "jit_spec": file_spec(folder / "tiny_openai.pt", "tiny-clip-openai"),
            "head_spec": file_spec(folder / "head.pth", "tiny-head")}


def scorer_classes(tiny: dict[str, Any], checkpoint: str = "jit_spec", head: WeightSpec | None = None) -> tuple:
    config = ClipConfig(TINY, tiny[checkpoint], quick_gelu=True, embedding_key="clip-test-tiny")

    class TinyAesthetic(AestheticScorer):
        clip_config: ClassVar[ClipConfig] = config
        head_spec: ClassVar[WeightSpec] = head or tiny["head_spec"]

    class TinyClipIqa(ClipIqaScorer):
        clip_config: ClassVar[ClipConfig] = config

    return TinyAesthetic, TinyClipIqa


def images(n: int, seed: int = 0) -> list[DecodedImage]:
    out = []
    for i in range(n):
        rgb = photo(seed + i, (96 + 16 * i, 72 + 8 * (i % 3)))
        out.append(DecodedImage(path=f"im{i}.png", rgb=rgb, original_size=(rgb.shape[1], rgb.shape[0])))
    return out


@pytest.fixture
def loaded(tiny: dict[str, Any]):
    a_cls, q_cls = scorer_classes(tiny)
    a, q = a_cls(device="cpu"), q_cls(device="cpu")
    a.load()
    q.load()
    yield a, q
    a.unload()
    q.unload()


@pytest.mark.parametrize("checkpoint", ["state_spec", "jit_spec"])
def test_loader_fills_every_tensor_from_the_checkpoint(tiny: dict[str, Any], checkpoint: str, tmp_path: Path) -> None:
    from scorers.weights import fetch

    path = fetch(tiny[checkpoint], tmp_path)
    model = load_clip_model(path, TINY, quick_gelu=True)
    loaded_state = model.state_dict()
    assert set(loaded_state) == set(tiny["state"])
    for key, value in tiny["state"].items():
        assert torch.equal(loaded_state[key], value), key
    assert not model.training


def test_loader_refuses_an_incomplete_checkpoint(tiny: dict[str, Any], tmp_path: Path) -> None:
    partial = {k: v for k, v in tiny["state"].items() if not k.startswith("visual.transformer.resblocks.1.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_clip_model(tmp_path / "partial.pt", TINY, quick_gelu=True)


def reference_aesthetic(model: Any, head_state: dict[str, torch.Tensor], rgb: np.ndarray) -> float:
    """improved-aesthetic-predictor's simple_inference.py, step by step, on the same weights."""
    preprocess = transforms.Compose([
        transforms.Resize(56, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(56),
        lambda im: im.convert("RGB"), transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(768, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
                torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    def normalized(a: np.ndarray, axis: int = -1, order: int = 2) -> np.ndarray:
        l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
        l2[l2 == 0] = 1
        return a / np.expand_dims(l2, axis)

    mlp = MLP()
    mlp.load_state_dict(head_state)
    mlp.eval()
    with torch.no_grad():
        features = model.encode_image(preprocess(Image.fromarray(rgb)).unsqueeze(0))
        emb = normalized(features.cpu().detach().numpy())
        return float(mlp(torch.from_numpy(emb).type(torch.FloatTensor)))


@pytest.mark.parametrize("real_head", [False, True], ids=["test-head", "real-head"])
def test_aesthetic_matches_the_reference_pipeline(tiny: dict[str, Any], real_head: bool, tmp_path: Path) -> None:
    if real_head and not SHARED_WEIGHTS.is_dir():
        pytest.skip("real aesthetic head not available here")
    head_spec = (WeightSpec(name=AESTHETIC_HEAD_L14.name, sha256=AESTHETIC_HEAD_L14.sha256,
                            url=(SHARED_WEIGHTS / AESTHETIC_HEAD_L14.filename).as_uri())
                 if real_head else tiny["head_spec"])
    a_cls, _ = scorer_classes(tiny, head=head_spec)
    scorer = a_cls(device="cpu", cache_dir=tmp_path)
    batch = images(4)
    got = [r["aesthetic"] for r in scorer.score_batch(batch)]
    model = load_clip_model(tiny["folder"] / "tiny_state.pt", TINY, quick_gelu=True)
    head_path = SHARED_WEIGHTS / AESTHETIC_HEAD_L14.filename if real_head else tiny["folder"] / "head.pth"
    head_state = torch.load(head_path, map_location="cpu", weights_only=True)
    expected = [float(np.clip(reference_aesthetic(model, head_state, im.rgb), 0, 10)) for im in batch]
    assert got == pytest.approx(expected, abs=1e-4)
    scorer.unload()


def test_embeddings_shape_norm_and_keys(loaded: tuple) -> None:
    aesthetic, _ = loaded
    batch = images(3)
    out = aesthetic.score_batch(batch)
    assert [set(o) for o in out] == [{"aesthetic"}] * 3
    for im in batch:
        v = im.embeddings["clip-test-tiny"]
        assert v.shape == (768,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        assert im.features[f"clip:{TINY}"] is v


def test_one_clip_pass_per_image_across_both_scorers(loaded: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    aesthetic, clip_iqa = loaded
    assert aesthetic.encoder is clip_iqa.encoder
    seen: list[int] = []
    model = aesthetic.encoder.model
    original = model.encode_image

    def counting(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(len(pixels))
        return original(pixels)

    monkeypatch.setattr(model, "encode_image", counting)
    batch = images(5)
    aesthetic.score_batch(batch)
    clip_iqa.score_batch(batch)
    clip_iqa.score_batch(batch[:2] + images(1, seed=50))
    assert sum(seen) == 6


def test_batch_equals_one_by_one(loaded: tuple) -> None:
    for scorer in loaded:
        together = scorer.score_batch(images(5))
        alone = [scorer.score_batch(images(5)[i:i + 1])[0] for i in range(5)]
        for t, s in zip(together, alone):
            assert t == pytest.approx(s, abs=1e-5)


def test_clip_iqa_metrics_and_softmax(loaded: tuple) -> None:
    _, clip_iqa = loaded
    out = clip_iqa.score_batch(images(3))
    assert [set(o) for o in out] == [set(clip_iqa.metric_names())] * 3
    assert all(0.0 <= v <= 1.0 for o in out for v in o.values())
    # the arithmetic on crafted embeddings: an image embedding equal to a positive prompt wins that pair
    prompts = np.eye(4, 8)  # two pairs: (p0 vs p1), (p2 vs p3)
    image = np.zeros((1, 8))
    image[0, 0] = 1.0
    probs = clip_iqa_probabilities(image, prompts)
    assert probs.shape == (1, 2)
    assert probs[0, 0] == pytest.approx(1 / (1 + np.exp(-100.0)))
    assert probs[0, 1] == pytest.approx(0.5)
    assert [p.positive for p in CLIP_IQA_PROMPTS][:2] == ["Good photo.", "Sharp photo."]


def test_aesthetic_is_clamped_to_its_declared_range(tiny: dict[str, Any], tmp_path: Path) -> None:
    state = torch.load(tiny["folder"] / "head.pth", weights_only=True)
    results = []
    for name, bias in (("high", 1000.0), ("low", -1000.0)):
        state["layers.7.bias"] = torch.tensor([bias])
        torch.save(state, tmp_path / f"head-{name}.pth")
        a_cls, _ = scorer_classes(tiny, head=file_spec(tmp_path / f"head-{name}.pth", f"head-{name}"))
        scorer = a_cls(device="cpu", cache_dir=tmp_path)
        results.append(scorer.score_batch(images(1))[0]["aesthetic"])
        scorer.unload()
    assert results == [10.0, 0.0]


class FakeOomOnBigBatches:
    """Stands in for a GPU that runs out of memory above `limit` images per forward pass."""

    def __init__(self, encode: Any, limit: int) -> None:
        self.encode, self.limit, self.sizes = encode, limit, []

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(pixels))
        if len(pixels) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.encode(pixels)


def test_out_of_memory_halves_the_batch_and_goes_on(loaded: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    aesthetic, _ = loaded
    expected = aesthetic.score_batch(images(7))
    fake = FakeOomOnBigBatches(aesthetic.encoder.model.encode_image, limit=2)
    monkeypatch.setattr(aesthetic.encoder.model, "encode_image", fake)
    got = aesthetic.score_batch(images(7))
    assert got == [pytest.approx(e, abs=1e-5) for e in expected]
    assert fake.sizes[:4] == [7, 4, 2, 2] and aesthetic.encoder.backoff.limit == 2
    fake.sizes.clear()
    aesthetic.score_batch(images(4, seed=20))
    assert fake.sizes == [2, 2]  # the smaller batch is kept for later batches


def test_out_of_memory_on_a_single_image_is_an_error() -> None:
    def always_oom(chunk: list[int]) -> list[int]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        OomBackoff(4).map(always_oom, [1, 2, 3])
    assert OomBackoff(None).map(lambda c: sum(c), [1, 2, 3]) == [6]
    assert OomBackoff(2).map(lambda c: sum(c), [1, 2, 3]) == [3, 3]


def test_model_is_shared_loaded_once_and_freed(tiny: dict[str, Any]) -> None:
    a_cls, q_cls = scorer_classes(tiny)
    a, q = a_cls(device="cpu"), q_cls(device="cpu")
    a.load()
    a.load()
    q.load()
    key = a._encoder_key
    assert a.encoder is q.encoder and _ENCODERS.users(key) == 2
    a.unload()
    assert _ENCODERS.users(key) == 1 and q.encoder.model is not None
    q.unload()
    assert _ENCODERS.users(key) == 0
    q.load()
    assert q.score_batch(images(1))
    q.unload()


def test_missing_weights_offline_make_the_scorers_unavailable(tmp_path: Path) -> None:
    for cls in (AestheticScorer, ClipIqaScorer):
        scorer = cls(device="cpu", cache_dir=tmp_path)
        status = scorer.availability()
        assert not status.ok and "clip-vit-l-14-openai not in cache and HF_HUB_OFFLINE=1" in status.reason
        with pytest.raises(WeightsUnavailable):
            scorer.load()


def test_checksum_failure_refuses_to_load(tiny: dict[str, Any], tmp_path: Path) -> None:
    spec = tiny["jit_spec"]
    wrong = WeightSpec(name="tiny-clip-wrong", url=spec.url, sha256="0" * 64)
    config = ClipConfig(TINY, wrong, quick_gelu=True, embedding_key="clip-test-tiny")

    class WrongChecksum(ClipIqaScorer):
        clip_config: ClassVar[ClipConfig] = config

    scorer = WrongChecksum(device="cpu", cache_dir=tmp_path)
    assert scorer.availability().ok  # a file:// source can be fetched offline...
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        scorer.load()  # ...but it is not the pinned file, so it is never loaded


def test_extreme_strips_are_cut_to_their_central_part_first() -> None:
    strip = np.zeros((5, 20_000, 3), np.uint8)
    strip[:, 9_990:10_010] = 255
    cut = central_strip(strip)
    assert cut.shape == (5, 20, 3) and cut.all()
    tall = np.zeros((30, 4, 3), np.uint8)
    assert central_strip(tall).shape == (16, 4, 3)
    photo_like = np.zeros((300, 1000, 3), np.uint8)
    assert central_strip(photo_like) is photo_like  # ordinary images are untouched


def test_device_and_precision() -> None:
    assert resolve_device("cpu") == "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    assert precision_for("cuda") == "fp16" and precision_for("cuda:1") == "fp16"
    assert precision_for("cpu") == "fp32" and precision_for("mps") == "fp32"


def test_engine_stores_clip_embeddings_in_duckdb(tiny: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    for i in range(5):
        save(photo(i, (120, 90)), root / f"img{i}.jpg", quality=92)
    a_cls, q_cls = scorer_classes(tiny)
    # the tiny-CLIP scorers stand in for the registered ones under the same names and metrics
    monkeypatch.setitem(scorers_base._REGISTRY, "aesthetic", a_cls)
    monkeypatch.setitem(scorers_base._REGISTRY, "clip_iqa", q_cls)
    scorers = [a_cls(device="cpu"), q_cls(device="cpu")]
    con = connect(tmp_path / "db.duckdb")
    progress = ScoringJob(con, root, scorers, batch_size=2).run()
    assert progress.state == "done" and not progress.unavailable
    rows = con.execute("SELECT i.path, e.model, e.vector FROM embeddings e JOIN images i ON i.id = e.image_id "
                       "ORDER BY i.path").fetchall()
    assert [r[0] for r in rows] == [f"img{i}.jpg" for i in range(5)]
    assert {r[1] for r in rows} == {"clip-test-tiny"}
    for r in rows:
        assert len(r[2]) == 768 and np.linalg.norm(r[2]) == pytest.approx(1.0, abs=1e-5)
    scores = con.execute("SELECT aesthetic, clip_iqa_quality FROM image_scores").fetchall()
    assert len(scores) == 5 and all(a is not None and q is not None for a, q in scores)
    con.close()
    for s in scorers:
        s.unload()

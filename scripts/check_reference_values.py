"""Check the neural scorers against published values and independent reference code, with the REAL weights.

Run on a machine with internet (downloads ~1.2 GB of weights through Curator's own weights helper into
CURATOR_CACHE / --cache-dir, plus two small OpenCV test images):

    python scripts/check_reference_values.py [--device auto] [--cache-dir DIR] [--only brisque,aesthetic,...]

Prints one line per check (PASS / FAIL / SKIP, measured and expected values) and exits 1 if any
check fails. What each check rests on:
- brisque: OpenCV's own test expectations (opencv_contrib modules/quality/test/test_brisque.cpp):
  31.866388 on opencv_extra's cv/optflow/rock_1.bmp read as grayscale and 9.7544804 on RubberWhale1.png,
  tolerance 0.001 as in OpenCV's test. Curator's "opencv" route must reproduce them; the offline
  "libsvm" route (the brisque package's LIVE model) is reported with its distance to them.
- aesthetic: no published per-image score is known to us, so the check is against an independent
  re-implementation of improved-aesthetic-predictor's simple_inference.py (open_clip's OpenAI loader,
  OpenAI's preprocessing, the reference MLP and `normalized`) on the same images, plus plausibility
  (scores on the 1-10 scale, heavy blur lowers them).
- clip_iqa: compared with torchmetrics' CLIPImageQualityAssessment on openai/clip-vit-large-patch14 when
  torchmetrics and transformers are installed (same prompts, same OpenAI weights converted by Hugging
  Face; preprocessing implementations differ slightly). pyiqa's `clipiqa` calibration values use a
  ResNet-50 CLIP and do not apply to this ViT-L/14 variant.
- face / identity: insightface's sample photo t1.jpg (six people, shipped in the insightface package)
  must give six faces; skimage's astronaut one frontal face; with t1 as the reference photo (its largest
  face is the reference), identity must find that person in the mirrored photo (ArcFace cosine > 0.5) and
  not in insightface's Tom Hanks sample (< 0.3).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scorers.base import DecodedImage, WeightsUnavailable  # noqa: E402
from scorers.brisque import BRISQUE_MODEL_LIVE, BRISQUE_RANGE_LIVE, BrisqueScorer  # noqa: E402
from scorers.clip import CLIP_IQA_PROMPTS, AestheticScorer, ClipIqaScorer  # noqa: E402
from scorers.face import FaceScorer, IdentityScorer  # noqa: E402
from scorers.weights import fetch  # noqa: E402

OPENCV_EXTRA = "https://raw.githubusercontent.com/opencv/opencv_extra/4.x/testdata/cv/optflow/"
BRISQUE_EXPECTED = {"rock_1.bmp": (31.866388320922852, cv2.IMREAD_GRAYSCALE),
                    "RubberWhale1.png": (9.7544803619384766, cv2.IMREAD_UNCHANGED)}
OPENCV_TOLERANCE = 1e-3


@dataclass
class Result:
    check: str
    status: str  # PASS | FAIL | SKIP
    detail: str


RESULTS: list[Result] = []


def report(check: str, ok: bool | None, detail: str) -> None:
    status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
    RESULTS.append(Result(check, status, detail))
    print(f"{status:<4}  {check:<44} {detail}", flush=True)


def decoded(rgb: np.ndarray, name: str) -> DecodedImage:
    return DecodedImage(path=name, rgb=np.ascontiguousarray(rgb), original_size=(rgb.shape[1], rgb.shape[0]))


def sample_photos() -> dict[str, np.ndarray]:
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}


def insightface_image(name: str) -> np.ndarray:
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / name
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# -- BRISQUE ------------------------------------------------------------------------------------------
def check_brisque(args: argparse.Namespace, work: Path) -> None:
    opencv = BrisqueScorer(cache_dir=args.cache_dir, options={"brisque_model": "opencv"})
    libsvm = BrisqueScorer(cache_dir=args.cache_dir, options={"brisque_model": "libsvm"})
    try:
        opencv.load()
        model_file, range_file = (str(fetch(s, args.cache_dir)) for s in (BRISQUE_MODEL_LIVE, BRISQUE_RANGE_LIVE))
    except WeightsUnavailable as e:
        report("brisque: opencv LIVE model files", False, str(e))
        return
    for name, (expected, flags) in BRISQUE_EXPECTED.items():
        path = work / name
        try:
            urllib.request.urlretrieve(OPENCV_EXTRA + name, path)
        except OSError as e:
            report(f"brisque: {name}", False, f"cannot download the OpenCV test image: {e}")
            continue
        as_opencv_reads = cv2.imread(str(path), flags)
        direct = cv2.quality.QualityBRISQUE_compute(as_opencv_reads, model_file, range_file)[0]
        report(f"brisque: cv2.quality on {name}", abs(direct - expected) < OPENCV_TOLERANCE,
               f"{direct:.6f} (OpenCV's test expects {expected:.6f})")
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if max(rgb.shape[:2]) > BrisqueScorer.input_size:
            report(f"brisque: curator on {name}", None, "image larger than the scorer's input size")
            continue
        ours = opencv.score_batch([decoded(rgb, name)])[0]["brisque"]
        report(f"brisque: curator opencv route on {name}", abs(ours - expected) < OPENCV_TOLERANCE,
               f"{ours:.6f} (expected {expected:.6f})")
        offline = libsvm.score_batch([decoded(rgb, name)])[0]["brisque"]
        report(f"brisque: curator libsvm route on {name}", abs(offline - expected) < 8.0,
               f"{offline:.3f} ({offline - expected:+.3f} from OpenCV's value; tolerance 8, different training)")


# -- LAION aesthetic ----------------------------------------------------------------------------------
def reference_aesthetic(checkpoint: Path, head_path: Path, device: str, images: list[np.ndarray]) -> list[float]:
    """improved-aesthetic-predictor's simple_inference.py with open_clip's OpenAI loader (not ours)."""
    import open_clip
    import torch
    from PIL import Image
    from torchvision import transforms

    model = open_clip.load_openai_model(str(checkpoint), precision="fp32", device=device).eval()
    n_px = model.visual.image_size[0]  # 224 for ViT-L/14; OpenAI's _transform(model.visual.input_resolution)
    preprocess = transforms.Compose([
        transforms.Resize(n_px, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(n_px),
        lambda im: im.convert("RGB"), transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    layers = torch.nn.Sequential(
        torch.nn.Linear(768, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))
    mlp = torch.nn.Module()
    mlp.layers = layers
    mlp.load_state_dict(torch.load(head_path, map_location="cpu", weights_only=True))
    mlp.to(device).eval()
    out = []
    with torch.no_grad():
        for rgb in images:
            features = model.encode_image(preprocess(Image.fromarray(rgb)).unsqueeze(0).to(device)).cpu().numpy()
            norm = np.atleast_1d(np.linalg.norm(features, 2, -1))
            norm[norm == 0] = 1
            emb = features / np.expand_dims(norm, -1)
            out.append(float(mlp.layers(torch.from_numpy(emb).float().to(device))))
    return out


def check_aesthetic(args: argparse.Namespace, work: Path) -> None:
    scorer = AestheticScorer(device=args.device, cache_dir=args.cache_dir)
    try:
        scorer.load()
    except WeightsUnavailable as e:
        report("aesthetic: weights", False, str(e))
        return
    photos = sample_photos()
    names, rgbs = list(photos), list(photos.values())
    ours = [o["aesthetic"] for o in scorer.score_batch([decoded(r, n) for n, r in photos.items()])]
    checkpoint = fetch(scorer.clip_config.checkpoint, args.cache_dir)
    head = fetch(scorer.head_spec, args.cache_dir)
    reference = reference_aesthetic(checkpoint, head, scorer.encoder.device, rgbs)
    tolerance = 0.05 if scorer.encoder.device.startswith("cuda") else 2e-3  # fp16 on CUDA in the scorer
    for name, a, b in zip(names, ours, reference):
        report(f"aesthetic: {name} vs reference code", abs(a - min(max(b, 0), 10)) < tolerance,
               f"curator {a:.4f}, reference {b:.4f} (tolerance {tolerance})")
    report("aesthetic: scores on the 1-10 scale", all(1.0 <= v <= 10.0 for v in ours),
           ", ".join(f"{n} {v:.2f}" for n, v in zip(names, ours)))
    blurred = [o["aesthetic"] for o in scorer.score_batch(
        [decoded(cv2.GaussianBlur(r, (0, 0), 8), n) for n, r in photos.items()])]
    drops = [a - b for a, b in zip(ours, blurred)]
    report("aesthetic: heavy blur lowers the score", sum(d > 0 for d in drops) >= len(drops) - 1,
           "drops " + ", ".join(f"{d:+.2f}" for d in drops))
    scorer.unload()


# -- CLIP-IQA -----------------------------------------------------------------------------------------
TORCHMETRICS_PROMPTS = {"clip_iqa_quality": "quality", "clip_iqa_sharpness": "sharpness",
                        "clip_iqa_clean": "noisiness", "clip_iqa_brightness": "brightness",
                        "clip_iqa_contrast": "contrast", "clip_iqa_colorfulness": "colorfullness"}


def check_clip_iqa(args: argparse.Namespace, work: Path) -> None:
    scorer = ClipIqaScorer(device=args.device, cache_dir=args.cache_dir)
    try:
        scorer.load()
    except WeightsUnavailable as e:
        report("clip_iqa: weights", False, str(e))
        return
    photos = sample_photos()
    ours = scorer.score_batch([decoded(r, n) for n, r in photos.items()])
    blurred = scorer.score_batch([decoded(cv2.GaussianBlur(r, (0, 0), 6), n) for n, r in photos.items()])
    lower = sum(b["clip_iqa_sharpness"] < a["clip_iqa_sharpness"] for a, b in zip(ours, blurred))
    report("clip_iqa: blur lowers P(sharp)", lower >= len(photos) - 1, f"{lower} of {len(photos)} images")
    try:
        import torch
        from torchmetrics.multimodal import CLIPImageQualityAssessment
    except ImportError:
        report("clip_iqa: vs torchmetrics", None, "torchmetrics/transformers not installed")
        scorer.unload()
        return
    prompts = tuple(TORCHMETRICS_PROMPTS[p.metric] for p in CLIP_IQA_PROMPTS)
    metric = CLIPImageQualityAssessment(model_name_or_path="openai/clip-vit-large-patch14", prompts=prompts)
    for (name, rgb), mine in zip(photos.items(), ours):
        theirs = metric(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float())
        worst = max(abs(mine[p.metric] - float(theirs[TORCHMETRICS_PROMPTS[p.metric]])) for p in CLIP_IQA_PROMPTS)
        report(f"clip_iqa: {name} vs torchmetrics", worst < 0.05, f"largest difference {worst:.4f} (tolerance 0.05)")
    scorer.unload()


# -- faces --------------------------------------------------------------------------------------------
def check_faces(args: argparse.Namespace, work: Path) -> None:
    import skimage.data

    face = FaceScorer(device=args.device, cache_dir=args.cache_dir)
    try:
        face.load()
    except WeightsUnavailable as e:
        report("face: buffalo_l", False, str(e))
        return
    group = insightface_image("t1.jpg")
    astronaut = skimage.data.astronaut()
    hanks = cv2.copyMakeBorder(insightface_image("Tom_Hanks_54745.png"), 112, 112, 112, 112, cv2.BORDER_CONSTANT,
                               value=(127, 127, 127))  # an aligned 112 px crop, given room around it
    out = face.score_batch([decoded(group, "t1.jpg"), decoded(astronaut, "astronaut"), decoded(hanks, "hanks")])
    report("face: six faces in insightface's t1.jpg", out[0]["face_count"] == 6, f"{out[0]['face_count']:.0f} found")
    a = out[1]
    report("face: astronaut has one frontal face", a["face_count"] == 1 and a["face_det_score"] > 0.6
           and abs(a["face_yaw"]) < 30 and abs(a["face_pitch"]) < 30,
           f"count {a['face_count']:.0f}, score {a['face_det_score']:.3f}, yaw {a['face_yaw']:.1f}, "
           f"pitch {a['face_pitch']:.1f}, quality {a['face_quality']:.3f}")
    cat = face.score_batch([decoded(skimage.data.chelsea(), "chelsea")])[0]
    report("face: no face in the cat photo gives nulls", cat["face_count"] == 0 and cat["face_quality"] is None,
           f"count {cat['face_count']:.0f}, quality {cat['face_quality']}")
    refs = work / "refs"
    refs.mkdir()
    cv2.imwrite(str(refs / "t1.png"), cv2.cvtColor(group, cv2.COLOR_RGB2BGR))
    identity = IdentityScorer(device=args.device, cache_dir=args.cache_dir, options={"reference_dir": str(refs)})
    identity.load()
    same, other = identity.score_batch([decoded(group[:, ::-1], "t1 mirrored"), decoded(hanks, "hanks")])
    report("identity: t1's largest face found in mirrored t1", same["identity_similarity"] > 0.5,
           f"{same['identity_similarity']:.3f} (expected > 0.5)")
    report("identity: Tom Hanks is not that person", other["identity_similarity"] is not None
           and other["identity_similarity"] < 0.3, f"{other['identity_similarity']} (expected < 0.3)")
    face.unload()
    identity.unload()


CHECKS = {"brisque": check_brisque, "aesthetic": check_aesthetic, "clip_iqa": check_clip_iqa, "face": check_faces}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated: " + ", ".join(CHECKS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="curator-reference-") as tmp:
        for name in args.only.split(","):
            work = Path(tmp) / name
            work.mkdir()
            CHECKS[name.strip()](args, work)
    failed = [r for r in RESULTS if r.status == "FAIL"]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed or skipped; {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The degradation network: the shipped checkpoint through the real loader, its failure modes, and
a tiny end-to-end training run. Real components throughout; the shipped model is small enough to
run on CPU in well under a second per batch."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator import degrade
from scorers import registered
from scorers.base import DecodedImage, WeightsUnavailable
from scorers.degradation import HEADS, WEIGHTS_PATH, DegradationScorer, net, train
from scorers.degradation import data as ddata
from tests.images import photo

REPO = Path(__file__).resolve().parents[1]
METRICS = [f"degradation_{h}" for h in HEADS] + ["degradation_overall"]
MARK_KINDS = ("text", "tiled text", "logo", "logo + text", "logo + tiled text")


def _decoded(arrays: list[np.ndarray]) -> list[DecodedImage]:
    return [DecodedImage(path=f"i{i}", rgb=a, original_size=(a.shape[1], a.shape[0])) for i, a in enumerate(arrays)]


def _clean(seed: int) -> np.ndarray:
    return ddata.procedural("landscape", np.random.default_rng(seed), 288, 384)


@pytest.fixture(scope="module")
def scorer() -> DegradationScorer:
    s = DegradationScorer(device="cpu")
    assert s.availability().ok, s.availability().reason
    s.load()
    return s


def test_registered_with_declared_directions() -> None:
    cls = registered()["degradation"]
    by_name = {m.name: m for m in cls.metrics}
    assert list(by_name) == METRICS
    assert all(not by_name[f"degradation_{h}"].higher_is_better for h in HEADS)
    assert by_name["degradation_overall"].higher_is_better
    assert all((m.min, m.max) == (0.0, 1.0) for m in cls.metrics)
    assert tuple(net.DEFAULT_CONFIG["heads"]) == HEADS


def test_shipped_checkpoint_scores_a_batch(scorer: DegradationScorer) -> None:
    arrays = [photo(1, (640, 480)), photo(2, (200, 300)), _clean(3), photo(4, (8, 8)),
              np.zeros((64, 64, 3), np.uint8)]
    rows = scorer.score_batch(_decoded(arrays))
    assert len(rows) == len(arrays)
    for row in rows:
        assert sorted(row) == sorted(METRICS)
        assert all(v is not None and 0.0 <= v <= 1.0 for v in row.values())
    # Batch vs one at a time: same numbers (images of one shape share a forward pass).
    same_shape = [_clean(5), _clean(6), _clean(7)]
    together = scorer.score_batch(_decoded(same_shape))
    for img, row in zip(same_shape, together):
        alone = scorer.score_batch(_decoded([img]))[0]
        for m in METRICS:
            assert alone[m] == pytest.approx(row[m], abs=1e-4)


def test_folding_batchnorm_keeps_the_checkpoints_outputs() -> None:
    """The scorer runs the net with BatchNorm folded into the convolutions (faster); the logits must
    be the trained net's, to float rounding, on real degraded images."""
    import torch

    rng = np.random.default_rng(0)
    images = [ddata.degrade_random(_clean(s), rng, ddata.split_fonts("heldout"))[0] for s in (21, 22, 23)]
    x = net.to_tensor(np.stack(images))
    trained = net.load_checkpoint(WEIGHTS_PATH)
    folded = net.fold_batchnorm(net.load_checkpoint(WEIGHTS_PATH))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in trained.modules()) > 0
    with torch.inference_mode():
        expected, (got, cells) = trained.forward_maps(x), folded.forward_maps(x)
    assert torch.allclose(got, expected[0], atol=1e-4) and torch.allclose(cells, expected[1], atol=1e-4)


@pytest.mark.parametrize("seed", [11, 12])
def test_ranks_degraded_above_its_clean_source(scorer: DegradationScorer, seed: int) -> None:
    clean = _clean(seed)
    marked = degrade.watermark(clean, "© SAMPLE STOCK", opacity=0.8, scale=0.06, tiled=True)
    blurred = degrade.gaussian_blur(clean, 4.0)
    noisy = degrade.gaussian_noise(clean, 30.0, np.random.default_rng(seed))
    c, w, b, n = scorer.score_batch(_decoded([clean, marked, blurred, noisy]))
    assert w["degradation_watermark"] > c["degradation_watermark"] + 0.2
    assert b["degradation_blur"] > c["degradation_blur"] + 0.2
    assert n["degradation_noise"] > c["degradation_noise"] + 0.3
    assert max(w["degradation_overall"], n["degradation_overall"]) < c["degradation_overall"]


def test_missing_checkpoint_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scorers.degradation as mod

    monkeypatch.setattr(mod, "WEIGHTS_PATH", tmp_path / "nope.pt")
    s = DegradationScorer()
    assert not s.availability().ok and "missing" in s.availability().reason
    with pytest.raises(WeightsUnavailable, match="missing"):
        s.load()
    custom = DegradationScorer(options={"degradation_weights": str(tmp_path / "other.pt")})
    assert not custom.availability().ok


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "degradation.pt"
    shutil.copy(WEIGHTS_PATH, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    s = DegradationScorer(options={"degradation_weights": str(bad)})
    assert not s.availability().ok and "sha256" in s.availability().reason  # no sidecar: cannot verify
    (tmp_path / "degradation.pt.sha256").write_text(net.sha256(WEIGHTS_PATH) + "  degradation.pt\n")
    assert s.availability().ok  # the cheap check does not hash; load() does
    with pytest.raises(WeightsUnavailable, match="corrupt"):
        s.load()


def _tiny_pool() -> ddata.CleanPool:
    return ddata.CleanPool([photo(1, (320, 240)), photo(2, (300, 300))], ("shapes",))


def test_tiny_training_run_writes_a_loadable_reproducible_checkpoint(tmp_path: Path, capsys) -> None:
    kw = dict(steps=2, batch=2, crop=64, lr=1e-3, seed=3, threads=1, workers=0, log_every=1)
    first = train.train(_tiny_pool(), tmp_path / "ckpt.pt", **kw)
    steps = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(steps) == 2
    for line in steps:  # every head's own loss is logged, so a head that stalls can be seen
        heads = line.split("| heads ")[1].split()
        assert heads[::2] == list(HEADS) and all(0 <= float(v) < 10 for v in heads[1::2])
        assert all(float(v) > 0 for h, v in zip(heads[::2], heads[1::2]) if h != "watermark")  # always labelled
    second = train.train(_tiny_pool(), tmp_path / "elsewhere" / "other-name.pt", **kw)
    assert first == second, "same seed, same data and weights: the checkpoint must be byte-identical, whatever its name"
    s = DegradationScorer(options={"degradation_weights": str(tmp_path / "ckpt.pt")})
    assert s.availability().ok
    assert s.run_version() != DegradationScorer().run_version()
    rows = s.score_batch(_decoded([_clean(1)]))
    assert sorted(rows[0]) == sorted(METRICS)


def test_training_can_start_from_a_checkpoint(tmp_path: Path) -> None:
    """--init: fine-tuning (e.g. the shipped net on your own photos) starts from the given weights,
    records which, and stays reproducible."""
    import torch

    kw = dict(steps=2, batch=2, crop=64, lr=1e-3, seed=4, threads=1, workers=0, log_every=1)
    base = train.train(_tiny_pool(), tmp_path / "base.pt", **kw)
    scratch = train.train(_tiny_pool(), tmp_path / "scratch.pt", **kw)
    tuned = train.train(_tiny_pool(), tmp_path / "tuned.pt", init=tmp_path / "base.pt", **kw)
    again = train.train(_tiny_pool(), tmp_path / "again.pt", init=tmp_path / "base.pt", **kw)
    assert base == scratch and tuned == again
    assert tuned != scratch, "a run from a checkpoint must not equal the same run from random weights"
    meta = torch.load(tmp_path / "tuned.pt", weights_only=True)["meta"]
    assert meta["init_sha256"] == base
    assert "init_sha256" not in torch.load(tmp_path / "scratch.pt", weights_only=True)["meta"]


def _train_command(tmp_path: Path, init: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scorers.degradation", "train", "--init", str(init),
                           "--out", str(tmp_path / "x.pt")], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_training_command_refuses_a_missing_init(tmp_path: Path) -> None:
    done = _train_command(tmp_path, tmp_path / "nope.pt")
    assert done.returncode == 2 and "no such checkpoint" in done.stderr
    assert not (tmp_path / "x.pt").exists()


def test_training_command_refuses_an_init_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    """A wrong file (here an image, or someone else's torch file) is a one-line usage error, not a traceback."""
    import torch

    (tmp_path / "photo.pt").write_bytes(b"\xff\xd8\xff\xe0 not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    for init in (tmp_path / "photo.pt", tmp_path / "foreign.pt"):
        done = _train_command(tmp_path, init)
        assert done.returncode == 2 and "not a degradation checkpoint" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "x.pt").exists()


_WORKER_RUN = """
import sys, cv2, numpy as np
from pathlib import Path
from scorers.degradation import data as ddata, train
big = np.random.default_rng(0).integers(0, 256, (2400, 3200, 3)).astype(np.uint8)
cv2.resize(big, (1600, 1200), interpolation=cv2.INTER_AREA)  # starts OpenCV's threads, as loading a big photo does
pool = ddata.CleanPool([big], ("shapes",))
kw = dict(steps=4, batch=2, crop=64, lr=1e-3, seed=3, threads=1, log_every=1, share=2)
train.train(pool, Path(sys.argv[1]) / "w2.pt", workers=2, **kw)  # each prints "wrote ... sha256 <digest>"
train.train(pool, Path(sys.argv[1]) / "w0.pt", workers=0, **kw)
"""


def test_training_with_worker_processes_matches_in_process(tmp_path: Path) -> None:
    """Two data workers (taking turns at batches, so the batches that share canvases land on different
    workers) after OpenCV has threads running in the parent, as after loading a large --clean-dir
    photo: a forked worker hung there; spawned ones finish and give the same checkpoint as generating
    the data in-process."""
    done = subprocess.run([sys.executable, "-c", _WORKER_RUN, str(tmp_path)], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    digests = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("wrote")]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_degradation_labels_follow_the_applied_defects() -> None:
    rng = np.random.default_rng(0)
    clean = _clean(0)
    img, labels, alpha, kind = ddata.degrade_random(clean, rng, ddata.split_fonts("train"), p_clean=0.0,
                                                    only=("watermark",))
    assert labels[HEADS.index("watermark")] > 0 and alpha is not None and kind in MARK_KINDS
    assert np.count_nonzero(labels) == 1 and not np.array_equal(img, clean)
    ex = ddata.crop_example(img, labels, alpha, rng, 128, cell=16)
    assert ex.image.shape == (128, 128, 3) and ex.mask.shape == labels.shape
    assert ex.cells.shape == ex.cell_mask.shape == (8, 8)


def test_watermark_cells_mark_visible_strokes_ignore_faint_touches() -> None:
    change = np.zeros((64, 64), np.float32)
    change[5:9, 20:40] = 0.5  # a visible stroke across cells (0, 1) and (0, 2)
    change[40, 40] = 0.02     # a barely visible fringe pixel in cell (2, 2)
    cells, valid = ddata.watermark_cells(change, 64, 16)
    assert cells.shape == (4, 4)
    assert cells[0, 1] == cells[0, 2] == 1 and np.count_nonzero(cells) == 2
    assert valid[2, 2] == 0 and valid.sum() == 15
    clean_cells, clean_valid = ddata.watermark_cells(None, 64, 16)
    assert not clean_cells.any() and clean_valid.all()


def test_crop_label_is_presence_of_the_mark_inside_the_crop() -> None:
    img = _clean(1)
    labels = np.zeros(len(HEADS), np.float32)
    k = HEADS.index("watermark")
    labels[k] = 0.3
    change = np.zeros(img.shape[:2], np.float32)
    change[:40, :] = 0.2                     # a band along the top: every crop of 288 rows holds some of it
    ex = ddata.crop_example(img, labels, change, np.random.default_rng(0), 256)
    assert ex.labels[k] == 1 and ex.mask[k] == 1 and ex.cells.max() == 1
    change[:] = 0.0
    change[-3:, 190:193] = 0.01              # only a faint fringe, inside every 288 px crop
    ex = ddata.crop_example(img, labels, change, np.random.default_rng(0), 288)
    assert ex.mask[k] == 0 and not ex.cells.any()


def test_collage_cuts_shapes_from_the_photos_without_adding_a_cast() -> None:
    """From a black and a white photo: both show (a collage of several layers), shape edges are
    anti-aliased (values in between), and every pixel stays neutral gray, since turning, scaling
    and permuting channels never tint a gray, so collages cannot teach the cast head that a tint is
    clean."""
    photos = [np.zeros((300, 400, 3), np.uint8), np.full((300, 400, 3), 255, np.uint8)]
    for seed in range(3):
        img = ddata.collage(photos, np.random.default_rng(seed), 120, 160)
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8
        assert np.array_equal(img, ddata.collage(photos, np.random.default_rng(seed), 120, 160))
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
        assert (img < 10).any() and (img > 100).any() and ((img > 20) & (img < 130)).any()


def test_training_pool_draws_collages_and_the_heldout_pool_never_does() -> None:
    def sources(pool: ddata.CleanPool) -> set[str]:
        return {pool.draw(np.random.default_rng(i), 96)[1] for i in range(40)}

    train_pool = ddata.CleanPool([photo(1, (320, 240)), photo(2, (300, 300))], ("shapes",),
                                 collage_share=ddata.COLLAGE_SHARE)
    assert "collage" in sources(train_pool) and "shapes" in sources(train_pool)
    assert ddata.CleanPool.builtin("heldout").collage_share == 0
    assert "collage" not in sources(ddata.CleanPool([photo(1, (320, 240))], ("shapes",)))


def test_backdrop_family_is_a_few_plain_objects_on_a_plain_background() -> None:
    """Clean images of the kind the network used to take for logos: some object edges, but few
    (no busy texture anywhere), reproducible from the seed, and never in the held-out split."""
    for seed in range(12):
        img = ddata.procedural("backdrop", np.random.default_rng(seed), 192, 256)
        assert img.shape == (192, 256, 3) and img.dtype == np.uint8
        assert np.array_equal(img, ddata.procedural("backdrop", np.random.default_rng(seed), 192, 256))
        edges = np.abs(np.diff(img.astype(np.float32).mean(axis=2), axis=1)) > 12
        assert 0 < edges.mean() < 0.03
    busy = ddata.procedural("shapes", np.random.default_rng(0), 192, 256).astype(np.float32).mean(axis=2)
    assert (np.abs(np.diff(busy, axis=1)) > 12).mean() > 0.03
    assert "backdrop" in ddata.TRAIN_FAMILIES and "backdrop" not in ddata.HELDOUT_FAMILIES


def test_every_builtin_photo_is_installed() -> None:
    """The shipped checkpoint's recipe names its photos; one that the install lacks is skipped by the
    pool, which would silently train a different network (a fresh install without matplotlib did)."""
    missing = [s for s in ddata.TRAIN_PHOTOS + ddata.HELDOUT_PHOTOS if ddata.load_photo(s) is None]
    assert not missing, f"not installed: {missing} (is requirements.txt installed?)"


def test_watermark_kind_names_what_was_drawn() -> None:
    """The benchmark reports recall by kind of mark, so the kind must match the drawing: a lone logo
    is one compact shape, tiled text spreads across the image; and the mix is the documented one."""
    rng = np.random.default_rng(5)
    fonts = ddata.split_fonts("train")
    kinds = []
    for _ in range(300):
        alpha, kind = ddata.random_watermark_alpha((96, 128), rng, fonts)
        kinds.append(kind)
        assert kind in MARK_KINDS
        rows, cols = np.nonzero(alpha > 0)
        if kind == "logo" and len(rows):      # at most 0.35 of the height, turned by up to 45 degrees
            assert np.ptp(rows) < 48 and np.ptp(cols) < 48
        if kind == "tiled text" and len(rows):
            assert np.ptp(cols) > 64
    assert abs(np.mean([k == "logo" for k in kinds]) - 0.25) < 0.07
    assert abs(np.mean([k.startswith("logo + ") for k in kinds]) - 0.15) < 0.06


def test_training_batches_reuse_canvases_across_batches_not_within_one() -> None:
    """Every batch holds distinct clean canvases, the next `share` - 1 batches degrade the same
    ones their own way, and a sample does not depend on what the per-process cache held."""
    pool = ddata.CleanPool([photo(1, (320, 240)), photo(2, (300, 300))], ("shapes",),
                           collage_share=ddata.COLLAGE_SHARE)
    data = train.SyntheticDegradations(pool, length=16, seed=3, crop=96, share=2, batch=4)
    canvases = [data._canvas(i) for i in range(16)]
    for b in range(4):
        group = canvases[4 * b:4 * b + 4]
        assert all(not np.array_equal(group[j], group[k]) for j in range(4) for k in range(j))
    assert all(canvases[i] is canvases[i + 4] for i in (0, 1, 2, 3, 8, 9, 10, 11))
    assert not np.array_equal(canvases[0], canvases[8])
    assert not np.array_equal(data[0][0], data[4][0])  # same canvas, own degradations and crop
    backwards = train.SyntheticDegradations(pool, length=16, seed=3, crop=96, share=2, batch=4)
    for i in reversed(range(16)):
        assert all(np.array_equal(a, b) for a, b in zip(backwards[i], data[i]))


def test_reused_batches_come_back_flipped_with_their_cell_targets() -> None:
    """--reuse: each chunk of fresh batches first as generated, then once more per extra pass, in a
    shuffled order and flipped another way, the watermark cell targets flipped with the pixels."""
    import torch

    def batch(b: int) -> tuple[torch.Tensor, ...]:  # one bright 16 px cell, its cell target set
        img = torch.zeros(1, 32, 48, 3, dtype=torch.uint8)
        img[0, :16, 16 * b:16 * b + 16] = 255
        cells = torch.zeros(1, 2, 3)
        cells[0, 0, b] = 1
        return img, torch.full((1, 5), float(b)), torch.ones(1, 5), cells, torch.ones(1, 2, 3)

    fresh = [batch(b) for b in range(3)]
    out = list(train.reused(iter(fresh + [batch(0)]), reuse=4, chunk=3, seed=0))
    assert len(out) == 4 * 3 + 4
    assert all(out[i] is fresh[i] for i in range(3))
    for p in range(4):
        assert sorted(int(b[1][0, 0]) for b in out[3 * p:3 * p + 3]) == [0, 1, 2]  # each batch once a pass
    passes = [[b[0][0].float().mean(-1) for b in out[3 * p:3 * p + 3]] for p in range(4)]
    assert all(torch.equal(img, torch.flip(fresh[int(b[1][0, 0])][0][0].float().mean(-1), dims))
               for p, dims in enumerate([(), (1,), (0,), (0, 1)]) for img, b in zip(passes[p], out[3 * p:3 * p + 3]))
    for img, _labels, _mask, cells, _cell_mask in out:  # the target cell is where the bright cell went
        bright = img[0].float().mean(-1).reshape(2, 16, 3, 16).mean((1, 3)) > 0
        assert torch.equal(bright, cells[0] > 0)
    assert [int(b[1][0, 0]) for b in out[12:]] == [0, 0, 0, 0]  # a short last chunk is reused too
    assert list(train.reused(iter(fresh), reuse=1, chunk=3, seed=0)) == fresh


def test_training_with_reuse_is_reproducible_and_records_it(tmp_path: Path) -> None:
    import torch

    kw = dict(steps=4, batch=2, crop=64, lr=1e-3, seed=3, threads=1, workers=0, log_every=1, reuse=2, chunk=1)
    first = train.train(_tiny_pool(), tmp_path / "a.pt", **kw)
    assert first == train.train(_tiny_pool(), tmp_path / "b.pt", **kw)
    assert first != train.train(_tiny_pool(), tmp_path / "c.pt", **{**kw, "reuse": 1})
    meta = torch.load(tmp_path / "a.pt", weights_only=True)["meta"]
    assert meta["reuse"] == 2 and meta["chunk"] == 1 and meta["steps"] == 4


def test_colour_branch_feeds_the_colour_cast_head_alone(tmp_path: Path) -> None:
    """New nets give the colour-cast head a branch of its own: changing that branch moves the cast
    logit and nothing else, and folding BatchNorm covers it. A config without the key (degradation-v6
    and older) builds and loads the net without it; the shipped net has it."""
    import torch

    torch.manual_seed(0)
    model = net.DegradationNet().eval()
    x = net.to_tensor(np.stack([photo(s, (96, 128)) for s in (1, 2)]))
    with torch.inference_mode():
        before, cells_before = model.forward_maps(x)
        for p in model.color.parameters():
            p.add_(0.5)
        after, cells_after = model.forward_maps(x)
        folded = net.fold_batchnorm(model).forward_maps(x)
    cast = HEADS.index("color_cast")
    others = [i for i in range(len(HEADS)) if i != cast]
    assert (after[:, cast] - before[:, cast]).abs().min() > 1e-3
    assert torch.equal(after[:, others], before[:, others]) and torch.equal(cells_after, cells_before)
    assert torch.allclose(folded[0], after, atol=1e-4)
    old = net.DegradationNet({k: v for k, v in net.DEFAULT_CONFIG.items() if k != "color_branch"})
    assert not hasattr(old, "color") and old.heads[cast][0].in_features == old.heads[0][0].in_features
    net.save_checkpoint(old, tmp_path / "old.pt", {})
    assert net.load_checkpoint(tmp_path / "old.pt").cast is None
    assert net.load_checkpoint(WEIGHTS_PATH).cast == cast

"""Near-duplicate clusters on a synthetic video scored by the real engine, and keep-best-of-each."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import curator.dedupe as dedupe
from curator.dedupe import (
    DuplicateIndex,
    clusters,
    cosine_pairs,
    hamming_pairs,
    keep_best_of_each_cluster,
    pack_hashes,
)
from storage import decisions
from tests.video import Video, make_video, open_copy, path_ids


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Video:
    return make_video(tmp_path_factory.mktemp("video"))


@pytest.fixture
def con(video: Video, tmp_path: Path):
    c = open_copy(video, tmp_path)
    yield c
    c.close()


def test_every_shot_is_recovered_as_one_cluster(video: Video, con) -> None:
    found = clusters(con)
    by_id = {i: p for p, i in path_ids(con).items()}
    shots_per_cluster = [Counter(video.shot_of[by_id[m.image_id]] for m in c.members) for c in found]
    print(f"\n{len(found)} clusters for {video.shots} shots of {video.frames} frames: "
          f"{[dict(c) for c in shots_per_cluster]}")
    assert len(found) == video.shots
    for counts in shots_per_cluster:
        assert len(counts) == 1, f"a cluster mixes shots: {counts}"      # pure
        (shot, n), = counts.items()
        assert shot >= 0 and n == video.frames                            # complete; singles stay alone


def test_best_member_has_the_highest_ensemble(con) -> None:
    for c in clusters(con):
        ensembles = [m.ensemble for m in c.members]
        assert ensembles == sorted(ensembles, reverse=True)
        assert c.best.image_id == c.image_ids[0]


def test_threshold_moves_without_rebuilding(con) -> None:
    index = DuplicateIndex.build(con)
    assert index.hashed == len(path_ids(con)) and index.embedded == 0
    strict, default = index.groups(hamming=0), index.groups()
    assert sum(map(len, strict)) < sum(map(len, default))
    assert sorted(map(sorted, default)) == sorted(sorted(c.image_ids) for c in clusters(con))
    with pytest.raises(ValueError, match="beyond this index"):
        index.groups(hamming=index.max_hamming + 1)


def test_hamming_pairs_match_brute_force_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedupe, "_BLOCK_ELEMENTS", 1000)  # many small blocks
    rng = np.random.default_rng(3)
    codes = pack_hashes(rng.integers(0, 2, (300, 64)))
    i, j, d = hamming_pairs(codes, 26)
    full = np.array([[bin(int(a) ^ int(b)).count("1") for b in codes] for a in codes])
    want = {(a, b) for a in range(300) for b in range(a + 1, 300) if full[a, b] <= 26}
    assert set(zip(i.tolist(), j.tolist())) == want and want
    assert (full[i, j] == d).all()


def test_cosine_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(4)
    v = dedupe.l2_normalise(rng.normal(size=(200, 16)).astype(np.float32))
    i, j, s = cosine_pairs(v, 0.6)
    sim = v @ v.T
    want = {(a, b) for a in range(200) for b in range(a + 1, 200) if sim[a, b] >= 0.6}
    assert set(zip(i.tolist(), j.tolist())) == want and want
    assert np.allclose(sim[i, j], s)


def _store_clip(con, vectors: dict[int, np.ndarray]) -> None:
    rows = pd.DataFrame({"image_id": list(vectors), "model": dedupe.CLIP_MODEL,
                         "vector": [v.astype(np.float32).tolist() for v in vectors.values()]})
    con.register("clip_rows", rows)
    con.execute("INSERT INTO embeddings SELECT image_id, model, vector::FLOAT[] FROM clip_rows")


def test_clip_embeddings_join_images_hashes_call_different(con) -> None:
    ids = path_ids(con)
    a, b, c = ids["singles/photo_0.png"], ids["singles/photo_1.png"], ids["singles/photo_2.png"]
    rng = np.random.default_rng(5)
    base = rng.normal(size=768)
    _store_clip(con, {a: base, b: base + rng.normal(scale=0.05, size=768), c: rng.normal(size=768)})
    with_clip = {frozenset(cl.image_ids) for cl in clusters(con)}
    without = {frozenset(cl.image_ids) for cl in clusters(con, cosine=None)}
    assert frozenset({a, b}) in with_clip
    assert not any(a in g for g in without) and not any(c in g for g in with_clip)


def test_keep_best_rejects_the_rest_but_never_a_persons_decision(con) -> None:
    found = clusters(con)
    first, second = found[0], found[1]
    decisions.decide(con, [first.image_ids[3]], "accepted", session="browser-1")   # person keeps a non-best
    decisions.decide(con, [second.best.image_id], "rejected", session="browser-1")  # person rejects the best
    with pytest.raises(ValueError, match="dedupe:"):
        keep_best_of_each_cluster(con, found, session="browser-1")
    report = keep_best_of_each_cluster(con, found)
    now = decisions.current(con)
    assert now[first.image_ids[3]] == "accepted" and first.best.image_id in report.rejected
    assert now[second.best.image_id] == "rejected" and second.image_ids[1] in report.kept
    assert now.get(second.image_ids[1]) is None
    for c in found[2:]:
        assert c.best.image_id in report.kept and now.get(c.best.image_id) is None
        assert all(now[i] == "rejected" for i in c.image_ids[1:])
    assert report.left_alone == 2
    assert len(report.rejected) == sum(len(c.members) for c in found) - len(found) - 1
    # one action: a single undo restores everything the click changed
    assert sorted(decisions.undo(con)) == sorted(report.rejected)
    assert set(decisions.current(con)) - {first.image_ids[3], second.best.image_id} == set(report.rejected)
    assert all(decisions.current(con)[i] == "undecided" for i in report.rejected)

"""Selection strategies on the synthetic video, and proposals that respect a person's decisions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curator.dedupe import CLIP_MODEL
from curator.selection import SelectionError, identity_metric, propose, select
from storage import decisions
from storage.ranking import refresh_view
from storage.scores import ImageResult, MetricInfo, sync_metrics, write_results
from tests.video import Video, make_video, open_copy, path_ids


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Video:
    return make_video(tmp_path_factory.mktemp("video"))


@pytest.fixture
def con(video: Video, tmp_path: Path):
    c = open_copy(video, tmp_path)
    yield c
    c.close()


def _shots(video: Video, con, ids: list[int]) -> set[int]:
    """Distinct shots covered; each unrelated single photo counts as a shot of its own."""
    by_id = {i: p for p, i in path_ids(con).items()}
    return {video.shot_of[by_id[i]] if video.shot_of[by_id[i]] >= 0 else by_id[i] for i in ids}


def test_diverse_top_k_covers_more_shots_than_plain_top_k(video: Video, con) -> None:
    groups = video.shots + sum(1 for s in video.shot_of.values() if s < 0)
    lines = []
    for k in (video.shots, groups, 2 * groups):
        top, diverse = select(con, "top", k), select(con, "diverse", k)
        assert len(top.image_ids) == len(diverse.image_ids) == k
        covered_top = len(_shots(video, con, top.image_ids))
        covered_diverse = len(_shots(video, con, diverse.image_ids))
        lines.append(f"K={k}: plain top-K covers {covered_top} shots, diverse top-K {covered_diverse} (of {groups})")
        assert covered_diverse == min(k, groups) > covered_top
    print("\n" + "\n".join(lines))


def test_diverse_still_prefers_quality_within_coverage(con) -> None:
    diverse = select(con, "diverse", 3)
    top = select(con, "top", 1)
    assert diverse.image_ids[0] == top.image_ids[0]          # the best image is picked first
    quality_only = select(con, "diverse", 5, diversity=0.0)
    assert quality_only.image_ids == select(con, "top", 5).image_ids


def test_threshold_top_and_stratified(con) -> None:
    table = con.execute("SELECT image_id, ensemble FROM image_scores").df().set_index("image_id")["ensemble"]
    chosen = select(con, "threshold", min_ensemble=0.7).image_ids
    assert set(chosen) == set(table[table >= 0.7].index) and chosen
    assert len(select(con, "threshold", 4, min_ensemble=0.7).image_ids) == 4
    top = select(con, "top", 7).image_ids
    assert list(table.loc[top]) == sorted(table.loc[top], reverse=True)
    assert min(table.loc[top]) >= max(table.drop(top))
    strat = select(con, "stratified", 10, bands=5)
    lo, hi = table.min(), table.max()
    bands = {min(4, int((table[i] - lo) / ((hi - lo) / 5))) for i in strat.image_ids}
    assert len(strat.image_ids) == 10 and bands == {0, 1, 2, 3, 4}
    assert all("band" in strat.reasons[i] for i in strat.image_ids)


def test_bad_requests_say_why(con) -> None:
    with pytest.raises(SelectionError, match="needs a target size"):
        select(con, "diverse")
    with pytest.raises(SelectionError, match="minimum ensemble"):
        select(con, "threshold")
    with pytest.raises(SelectionError, match="unknown strategy"):
        select(con, "best", 3)
    with pytest.raises(SelectionError, match="identity"):
        select(con, "top", 3, min_identity=0.5)


def test_identity_filter_when_the_identity_metric_exists(con) -> None:
    metric = MetricInfo("identity_similarity", "identity", -1.0, 1.0, True, 1.0, "test identity")
    sync_metrics(con, [metric])
    ids = path_ids(con)
    results = []
    for path, image_id in ids.items():
        sha = con.execute("SELECT sha256 FROM images WHERE id = ?", [image_id]).fetchall()[0][0]
        r = ImageResult(image_id, sha, "ok")
        r.scores = {"identity": {"identity_similarity": 0.9 if path.startswith("shot1/") else 0.1}}
        results.append(r)
    write_results(con, results, {"identity": "1"}, {"identity": ("identity_similarity",)})
    refresh_view(con)
    assert identity_metric(con) == "identity_similarity"
    picked = select(con, "diverse", 5, min_identity=0.5)
    by_id = {i: p for p, i in ids.items()}
    assert len(picked.image_ids) == 5 and all(by_id[i].startswith("shot1/") for i in picked.image_ids)


def test_a_persons_decisions_shape_the_result_and_are_never_overridden(con) -> None:
    ids = path_ids(con)
    mine_accepted = ids["shot5/frame_004.png"]
    mine_rejected = select(con, "top", 1).image_ids[0]
    decisions.decide(con, [mine_accepted], "accepted", session="browser-1")
    decisions.decide(con, [mine_rejected], "rejected", session="browser-1")
    sel = select(con, "diverse", 6)
    assert sel.image_ids[0] == mine_accepted and mine_rejected not in sel.image_ids and len(sel.image_ids) == 6
    assert sel.reasons[mine_accepted] == "accepted by you"

    with pytest.raises(ValueError, match="selection:"):
        propose(con, sel, session="browser-1")          # a proposal can never pose as a person
    report = propose(con, sel)
    now = decisions.current(con)
    assert now[mine_rejected] == "rejected" and now[mine_accepted] == "accepted"
    assert sorted(report.accepted) == sorted(set(sel.image_ids) - {mine_accepted}) and report.left_alone == 1
    sessions = dict(con.execute("SELECT image_id, arg_max(session, id) FROM decisions GROUP BY image_id").fetchall())
    assert sessions[mine_accepted] == "browser-1" and all(sessions[i] == "selection:diverse" for i in report.accepted)

    # a person overrides one proposal; a newer proposal withdraws the rest of the old one, not theirs
    overridden = report.accepted[0]
    decisions.decide(con, [overridden], "rejected", session="browser-1")
    top3 = select(con, "top", 3)
    second = propose(con, top3)
    now = decisions.current(con)
    assert now[overridden] == "rejected" and now[mine_accepted] == "accepted"
    assert set(second.retracted) == set(report.accepted) - {overridden} - set(top3.image_ids)
    assert sum(d == "accepted" for d in now.values()) == 3
    # undo reverts the newest proposal action
    decisions.undo(con)
    assert all(decisions.current(con)[i] != "accepted" for i in second.accepted)


def test_clip_embeddings_count_as_same_shot_for_diversity(video: Video, con) -> None:
    """Two different files of one scene (hashes far apart, CLIP nearly identical) cover one shot."""
    ids = path_ids(con)
    rng = np.random.default_rng(7)
    vectors = {i: rng.normal(size=64) for i in ids.values()}
    twin_a, twin_b = ids["singles/photo_0.png"], ids["singles/photo_1.png"]
    vectors[twin_b] = vectors[twin_a] + rng.normal(scale=0.01, size=64)
    rows = pd.DataFrame({"image_id": list(vectors), "model": CLIP_MODEL,
                         "vector": [v.astype(np.float32).tolist() for v in vectors.values()]})
    con.register("clip_rows", rows)
    con.execute("INSERT INTO embeddings SELECT image_id, model, vector::FLOAT[] FROM clip_rows")
    k = video.shots + sum(1 for s in video.shot_of.values() if s < 0)   # one per group without CLIP
    with_clip = select(con, "diverse", k).image_ids
    without = select(con, "diverse", k, cosine=None).image_ids
    assert {twin_a, twin_b} <= set(without) and len(_shots(video, con, without)) == k
    # with CLIP the twins are one group: all k - 1 groups covered first, never both twins
    assert len({twin_a, twin_b} & set(with_clip)) == 1 and len(_shots(video, con, with_clip)) == k - 1

"""Choosing K images for training: threshold, top-K, stratified by score band, diversity-aware top-K.

All strategies draw from one pool: present, decodable images whose current decision is not
'rejected'. Images a person accepted are always in the result and count towards K; images a person
rejected never are. A strategy only returns ids (best or first-picked first) with a reason for each;
`propose` turns a result into decisions a person can review, override or undo, and never writes over
a decision a person made themselves.

The diversity-aware strategy is maximal marginal relevance: each pick maximises
`(1 - diversity) * quality - diversity * similarity to the closest image already picked`, so the
first picks cover different shots before a second frame of any shot is taken. Similarity comes from
the near-duplicate clusters of `curator.dedupe`, the perceptual hash (always) and CLIP embeddings
(where stored), whichever says "more alike".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import duckdb
import numpy as np
import pandas as pd

from curator.dedupe import (
    CLIP_MODEL,
    DEFAULT_COSINE,
    DEFAULT_HAMMING,
    DuplicateIndex,
    l2_normalise,
    pack_hashes,
)
from scorers.phash import MODEL as PHASH_MODEL
from storage.db import fetch_value, quote_ident
from storage.decisions import decide
from storage.ranking import ranked, saved_weights
from storage.scores import metric_catalogue
from storage.selection import review_state, vectors

STRATEGIES = ("threshold", "top", "stratified", "diverse")
SESSION_PREFIX = "selection:"
CLIP_UNRELATED = 0.5   # CLIP cosine at or below which two images count as unrelated for diversity


@dataclass(frozen=True)
class Selection:
    strategy: str
    image_ids: list[int]                    # pick order: the person's accepted images first
    reasons: dict[int, str] = field(default_factory=dict)
    summary: str = ""


class SelectionError(ValueError):
    """The request cannot be met as asked (unknown strategy, missing K, no identity metric)."""


def identity_metric(con: duckdb.DuckDBPyConnection) -> str | None:
    """The identity scorer's similarity metric, if that scorer ran (declared is not enough: it only
    scores when given reference photos)."""
    for m in metric_catalogue(con):
        if m.higher_is_better and (m.scorer == "identity" or m.name.startswith("identity")):
            if fetch_value(con.cursor(), f"SELECT count({quote_ident(m.name)}) FROM scores"):
                return m.name
    return None


def select(con: duckdb.DuckDBPyConnection, strategy: str, k: int | None = None, *,
           min_ensemble: float | None = None, bands: int = 5, diversity: float = 0.5,
           min_identity: float | None = None, weights: Mapping[str, float] | None = None,
           hamming: int = DEFAULT_HAMMING, cosine: float | None = DEFAULT_COSINE,
           index: DuplicateIndex | None = None) -> Selection:
    """Run one strategy; `k` is the target size including the images a person already accepted.

    `hamming` / `cosine` are the near-duplicate thresholds the diverse strategy treats as "same shot"
    (as in dedupe); pass the dashboard's `index` to reuse its pairs instead of finding them again."""
    if strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if k is None and strategy != "threshold":
        raise SelectionError(f"strategy {strategy!r} needs a target size K")
    if strategy == "threshold" and min_ensemble is None:
        raise SelectionError("strategy 'threshold' needs a minimum ensemble score")
    if k is not None and k < 1:
        raise SelectionError(f"K must be at least 1, not {k}")
    if not 0.0 <= diversity <= 1.0:
        raise SelectionError(f"diversity must be between 0 and 1, not {diversity}")
    if bands < 1:
        raise SelectionError(f"bands must be at least 1, not {bands}")

    table = ranked(con, saved_weights(con) if weights is None else weights)
    fixed, pool, notes = _pool(con, table, min_ensemble, min_identity)
    room = None if k is None else max(0, k - len(fixed))
    reasons = {i: "accepted by you" for i in fixed}
    if strategy in ("top", "threshold"):
        picks = pool.head(room) if room is not None else pool
        for rank, (i, e) in enumerate(zip(picks["image_id"], picks["ensemble"]), start=1):
            reasons[int(i)] = f"rank {rank} by ensemble ({_fmt(e)})"
        picked = [int(i) for i in picks["image_id"]]
    elif strategy == "stratified":
        picked = _stratified(pool, room, bands, reasons)
    else:
        if index is None:
            index = DuplicateIndex.build(con, max_hamming=hamming, min_cosine=cosine)
        picked = _diverse(con, fixed, pool, room, diversity, reasons, index, hamming, cosine)
    ids = fixed + picked
    summary = f"{strategy}: {len(ids)} images ({len(fixed)} accepted by you, {len(picked)} picked)"
    if k is not None and len(ids) < k:
        summary += f"; only {len(ids)} of K={k} available"
    if k is not None and len(fixed) > k:
        summary += f"; you accepted {len(fixed)}, more than K={k}"
    return Selection(strategy, ids, {i: reasons[i] for i in ids}, "; ".join([summary, *notes]))


def _pool(con: duckdb.DuckDBPyConnection, table: pd.DataFrame, min_ensemble: float | None,
          min_identity: float | None) -> tuple[list[int], pd.DataFrame, list[str]]:
    """(ids a person accepted, candidate rows best first, notes about filters)."""
    state = review_state(con)
    rejected = set(state.loc[state["decision"] == "rejected", "image_id"].astype(int))
    person_accepted = set(state.loc[(state["decision"] == "accepted") & state["by_person"], "image_id"].astype(int))
    present = table[~table["image_id"].isin(rejected)]
    fixed = [int(i) for i in present["image_id"] if int(i) in person_accepted]
    pool = present[~present["image_id"].isin(person_accepted)]
    notes = []
    if min_identity is not None:
        metric = identity_metric(con)
        if metric is None:
            raise SelectionError("no identity scores in this database: score with the identity scorer "
                                 "and a --reference folder first")
        pool = pool[pool[metric] >= min_identity]
        notes.append(f"identity filter {metric} >= {min_identity:g}")
    if min_ensemble is not None:
        pool = pool[pool["ensemble"] >= min_ensemble]
    pool = pool.sort_values(["ensemble", "path"], ascending=[False, True], na_position="last")
    return fixed, pool.reset_index(drop=True), notes


def _stratified(pool: pd.DataFrame, room: int, bands: int, reasons: dict[int, str]) -> list[int]:
    """Equal shares from equal-width ensemble bands, best first in each; unused shares go to the
    other bands from the top down, so the result still reaches K when a band runs short."""
    scored = pool.dropna(subset=["ensemble"])
    if scored.empty or room == 0:
        return []
    lo, hi = float(scored["ensemble"].min()), float(scored["ensemble"].max())
    width = (hi - lo) / bands or 1.0
    band = np.minimum(((scored["ensemble"].to_numpy() - lo) / width).astype(int), bands - 1)
    members = [scored[band == b] for b in range(bands - 1, -1, -1)]  # top band first
    quota = [room // bands + (1 if n < room % bands else 0) for n in range(bands)]
    taken = [min(q, len(m)) for q, m in zip(quota, members)]
    spare = room - sum(taken)
    for n, m in enumerate(members):
        extra = min(spare, len(m) - taken[n])
        taken[n] += extra
        spare -= extra
    picked = []
    for n, (m, t) in enumerate(zip(members, taken)):
        b = bands - 1 - n
        span = f"{lo + b * width:.3f}-{lo + (b + 1) * width:.3f}"
        for i, e in zip(m["image_id"].head(t), m["ensemble"].head(t)):
            reasons[int(i)] = f"band {b + 1} of {bands} ({span}), ensemble {e:.3f}"
            picked.append(int(i))
    return picked


class _Similarity:
    """Similarity (0..1) of one image to many, from the strongest evidence available.

    Near-duplicate clusters (the dedupe relation at the given thresholds) say "same shot" outright:
    a pan's first and last frames can have hashes far apart yet belong to one run, which pairwise
    distance alone misses. Between clusters, pHash distance fades from 1 at the near-duplicate
    threshold to 0 at twice it (unrelated images differ by ~32 of 64 bits, and a softer mapping made
    them look alike), and CLIP cosine (where stored) maps CLIP_UNRELATED..1 to 0..1; the larger counts.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, ids: np.ndarray, index: DuplicateIndex,
                 hamming: int, cosine: float | None) -> None:
        self.hamming = hamming
        self.label = -1 - np.arange(len(ids))  # singletons: a label of their own
        pos = {int(i): n for n, i in enumerate(ids)}
        for g, group in enumerate(index.groups(hamming, cosine)):
            for i in group:
                if i in pos:
                    self.label[pos[i]] = g
        hash_ids, bits = vectors(con, PHASH_MODEL)
        self.has_hash, rows = self._rows(ids, hash_ids)
        self.codes = np.zeros(len(ids), np.uint64)
        if self.has_hash.any():
            self.codes[self.has_hash] = pack_hashes(bits[rows[self.has_hash]])
        clip_ids, clip = vectors(con, CLIP_MODEL) if cosine is not None else (np.zeros(0, np.int64), None)
        self.has_clip, rows = self._rows(ids, clip_ids)
        self.clip = l2_normalise(clip[rows[self.has_clip]]) if self.has_clip.any() else None
        self.clip_row = np.cumsum(self.has_clip) - 1

    @staticmethod
    def _rows(ids: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = {int(i): n for n, i in enumerate(stored)}
        rows = np.array([pos.get(int(i), -1) for i in ids], np.int64)
        return rows >= 0, rows

    def to(self, n: int) -> np.ndarray:
        sim = (self.label == self.label[n]).astype(np.float32)
        if self.has_hash[n]:
            dist = np.bitwise_count(self.codes ^ self.codes[n]).astype(np.float32)
            fade = max(self.hamming, 1)
            near = np.clip((self.hamming + fade - dist) / fade, 0.0, 1.0)
            sim = np.maximum(sim, np.where(self.has_hash, near, 0.0)).astype(np.float32)
        if self.has_clip[n] and self.clip is not None:
            cos = self.clip @ self.clip[self.clip_row[n]]
            clip_sim = np.clip((cos - CLIP_UNRELATED) / (1.0 - CLIP_UNRELATED), 0.0, 1.0)
            sim[self.has_clip] = np.maximum(sim[self.has_clip], clip_sim)
        return sim


def _diverse(con: duckdb.DuckDBPyConnection, fixed: list[int], pool: pd.DataFrame, room: int,
             diversity: float, reasons: dict[int, str], index: DuplicateIndex, hamming: int,
             cosine: float | None) -> list[int]:
    if room == 0 or pool.empty:
        return []
    ids = np.concatenate([np.asarray(fixed, np.int64), pool["image_id"].to_numpy(np.int64)])
    quality = np.concatenate([np.zeros(len(fixed)), pool["ensemble"].fillna(0.0).to_numpy(np.float64)])
    sim = _Similarity(con, ids, index, hamming, cosine)
    closest = np.zeros(len(ids), np.float64)
    available = np.ones(len(ids), bool)
    available[:len(fixed)] = False
    for n in range(len(fixed)):
        closest = np.maximum(closest, sim.to(n))
    picked = []
    for _ in range(min(room, len(pool))):
        gain = np.where(available, (1.0 - diversity) * quality - diversity * closest, -np.inf)
        n = int(np.argmax(gain))  # ties: the pool is best first, so the better image wins
        reasons[int(ids[n])] = (f"pick {len(picked) + 1}: ensemble {quality[n]:.3f}, "
                                f"similarity to earlier picks {closest[n]:.2f}")
        picked.append(int(ids[n]))
        available[n] = False
        closest = np.maximum(closest, sim.to(n))
    return picked


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


@dataclass(frozen=True)
class ProposalReport:
    accepted: list[int]          # newly proposed as accepted
    retracted: list[int]         # earlier proposals not in this result, back to undecided
    left_alone: int              # images in the result a person decided on: untouched
    actions: list[int]           # decision action ids (undo reverts the newest first)


def propose(con: duckdb.DuckDBPyConnection, selection: Selection, session: str | None = None) -> ProposalReport:
    """Write a selection as proposed decisions under `session` (default 'selection:<strategy>'; it must
    start with 'selection:' so it stays a proposal). Undo with `storage.decisions.undo(con, session)`,
    once per action in the report.

    Picked images without a person's decision become 'accepted'; images an earlier proposal accepted
    that this result leaves out go back to 'undecided'. A person's own decisions are never touched.
    """
    session = session or SESSION_PREFIX + selection.strategy
    if not session.startswith(SESSION_PREFIX):
        raise ValueError(f"a proposal's session must start with {SESSION_PREFIX!r}, not {session!r}")
    state = review_state(con)
    person = set(state.loc[state["by_person"], "image_id"].astype(int))
    accepted_now = set(state.loc[state["decision"] == "accepted", "image_id"].astype(int))
    picked = set(selection.image_ids)
    to_accept = [i for i in selection.image_ids if i not in person and i not in accepted_now]
    to_retract = sorted(i for i in accepted_now - picked if i not in person)
    actions = [a for a in (
        decide(con, to_retract, "undecided", session=session, note="not in the newer proposal"),
        decide(con, to_accept, "accepted", session=session, note=selection.summary[:200]),
    ) if a is not None]
    return ProposalReport(to_accept, to_retract, len(picked & person), actions)

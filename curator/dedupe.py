"""Near-duplicate clusters: perceptual-hash distance always, CLIP cosine as well when it was stored.

Video frames are the common case: thousands of frames in runs of near-identical shots. Two images are
near-duplicates when their 64-bit pHashes differ in at most `hamming` bits, or (where both have a CLIP
embedding) their cosine similarity is at least `cosine`. Clusters are the connected components of
that relation (union-find), so a slow pan whose first and last frames differ a lot is still one
cluster through the frames in between.

Finding pairs is the expensive part, so `DuplicateIndex` finds them once, block by block (memory
O(block x n), never an n x n matrix), down to the loosest thresholds the UI offers; moving the
threshold slider then only filters those pairs and relabels components, which is instant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import duckdb
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from scorers.phash import MODEL as PHASH_MODEL
from storage.decisions import decide
from storage.ranking import ranked, saved_weights
from storage.selection import review_state, vectors

CLIP_MODEL = "clip-vit-l-14"
DEFAULT_HAMMING = 10      # bits of 64: frames of one shot measured 0-14 apart, unrelated images ~32
MAX_HAMMING = 16          # loosest threshold kept: random 64-bit codes fall this close ~4e-5 of the time
DEFAULT_COSINE = 0.95
MIN_COSINE = 0.80
KEEP_BEST_SESSION = "dedupe:keep-best"
_BLOCK_ELEMENTS = 1 << 22  # pairwise values computed at once: 32 MiB of uint64 / float64


def pack_hashes(bits: np.ndarray) -> np.ndarray:
    """(n, 64) array of 0/1 values -> (n,) uint64 codes, first bit most significant."""
    packed = np.packbits(np.asarray(bits) >= 0.5, axis=1)
    return packed.view(">u8").ravel().astype(np.uint64)


def _blocks(n: int) -> Iterator[tuple[int, int]]:
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, rows):
        yield start, min(n, start + rows)


def hamming_pairs(codes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with popcount(codes[i] ^ codes[j]) <= max_distance, as (i, j, distance)."""
    codes = np.asarray(codes, np.uint64)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start, stop in _blocks(len(codes)):
        dist = np.bitwise_count(codes[start:stop, None] ^ codes[None, start:])
        r, c = np.nonzero(dist <= max_distance)
        keep = c > r  # rows and columns both start at `start`, so c > r means j > i
        r, c = r[keep], c[keep]
        found.append((r + start, c + start, dist[r, c].astype(np.int16)))
    return _concat(found, np.int16)


def cosine_pairs(unit: np.ndarray, min_cosine: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j of L2-normalised rows with cosine >= min_cosine, as (i, j, cosine)."""
    unit = np.asarray(unit, np.float32)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start, stop in _blocks(len(unit)):
        sim = unit[start:stop] @ unit[start:].T
        r, c = np.nonzero(sim >= min_cosine)
        keep = c > r
        r, c = r[keep], c[keep]
        found.append((r + start, c + start, sim[r, c].astype(np.float32)))
    return _concat(found, np.float32)


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], dtype: type) -> tuple[np.ndarray, ...]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype)
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class DuplicateIndex:
    """Candidate near-duplicate pairs of a database's images, found once, clustered at any threshold.

    `image_ids` are the images with a hash or an embedding; pair arrays index into it.
    """

    image_ids: np.ndarray
    hash_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    clip_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    hashed: int
    embedded: int
    max_hamming: int
    min_cosine: float | None

    @classmethod
    def build(cls, con: duckdb.DuckDBPyConnection, max_hamming: int = MAX_HAMMING,
              min_cosine: float | None = MIN_COSINE) -> DuplicateIndex:
        """Pairs up to `max_hamming` bits and down to `min_cosine` (None: CLIP embeddings not used)."""
        hash_ids, bits = vectors(con, PHASH_MODEL)
        clip_ids, clip = vectors(con, CLIP_MODEL) if min_cosine is not None else (np.zeros(0, np.int64), None)
        ids = np.union1d(hash_ids, clip_ids).astype(np.int64)
        hi, hj, hd = hamming_pairs(pack_hashes(bits), max_hamming) if len(hash_ids) else _concat([], np.int16)
        ci, cj, cs = cosine_pairs(l2_normalise(clip), min_cosine) if len(clip_ids) else _concat([], np.float32)
        h_pos, c_pos = np.searchsorted(ids, hash_ids), np.searchsorted(ids, clip_ids)
        return cls(ids, (h_pos[hi], h_pos[hj], hd), (c_pos[ci], c_pos[cj], cs),
                   hashed=len(hash_ids), embedded=len(clip_ids), max_hamming=max_hamming, min_cosine=min_cosine)

    def groups(self, hamming: int = DEFAULT_HAMMING, cosine: float | None = DEFAULT_COSINE) -> list[list[int]]:
        """Image-id groups of two or more near-duplicates; `cosine` None ignores CLIP."""
        if hamming > self.max_hamming or (
                cosine is not None and self.min_cosine is not None and cosine < self.min_cosine):
            raise ValueError(f"thresholds beyond this index (hamming <= {self.max_hamming}, "
                             f"cosine >= {self.min_cosine}); build it with looser limits")
        hi, hj, hd = self.hash_pairs
        keep = hd <= hamming
        i, j = hi[keep], hj[keep]
        if cosine is not None:
            ci, cj, cs = self.clip_pairs
            keep = cs >= cosine
            i, j = np.concatenate([i, ci[keep]]), np.concatenate([j, cj[keep]])
        n = len(self.image_ids)
        if n == 0 or len(i) == 0:
            return []
        graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        order = np.argsort(labels, kind="stable")
        bounds = np.cumsum(sizes)[:-1]
        return [self.image_ids[g].tolist() for g in np.split(order, bounds) if len(g) > 1]


@dataclass(frozen=True)
class Member:
    image_id: int
    path: str
    ensemble: float | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Cluster:
    """Near-duplicates, best first (highest ensemble; then more pixels; then path)."""

    members: tuple[Member, ...]

    @property
    def best(self) -> Member:
        return self.members[0]

    @property
    def image_ids(self) -> list[int]:
        return [m.image_id for m in self.members]


def describe(con: duckdb.DuckDBPyConnection, groups: list[list[int]],
             weights: Mapping[str, float] | None = None) -> list[Cluster]:
    """Clusters of the groups with members ranked best first, largest cluster first."""
    if not groups:
        return []
    table = ranked(con, saved_weights(con) if weights is None else weights)
    info = {int(r.image_id): r for r in table[["image_id", "path", "ensemble", "width", "height"]].itertuples()}
    out = []
    for group in groups:
        members = [_member(info[i]) for i in group if i in info]
        members.sort(key=lambda m: (-(m.ensemble if m.ensemble is not None else -1.0),
                                    -((m.width or 0) * (m.height or 0)), m.path))
        if len(members) > 1:
            out.append(Cluster(tuple(members)))
    out.sort(key=lambda c: (-len(c.members), c.best.path))
    return out


def _member(row) -> Member:
    def num(v):
        return None if v is None or v != v else v  # NaN -> None
    ens, w, h = num(row.ensemble), num(row.width), num(row.height)
    return Member(int(row.image_id), row.path, None if ens is None else float(ens),
                  None if w is None else int(w), None if h is None else int(h))


def clusters(con: duckdb.DuckDBPyConnection, hamming: int = DEFAULT_HAMMING,
             cosine: float | None = DEFAULT_COSINE, weights: Mapping[str, float] | None = None,
             index: DuplicateIndex | None = None) -> list[Cluster]:
    """Near-duplicate clusters at the given thresholds (pass a built `index` to re-cluster cheaply)."""
    if index is None:
        index = DuplicateIndex.build(con, max_hamming=hamming, min_cosine=cosine)
    return describe(con, index.groups(hamming, cosine), weights)


@dataclass(frozen=True)
class KeepBestReport:
    clusters: int
    kept: list[int]          # one or more per cluster
    rejected: list[int]      # newly rejected by this action
    left_alone: int          # members whose decision a person made, untouched
    action: int | None       # decision action id (undo reverts it in one step)


def keep_best_of_each_cluster(con: duckdb.DuckDBPyConnection, found: list[Cluster],
                              session: str = KEEP_BEST_SESSION) -> KeepBestReport:
    """Reject every member except the one to keep, as one undoable action; never over a person's decision.

    The kept member is the one a person accepted (all of them, if several), else the best member that
    a person has not rejected. Members a person decided on keep their decision. `session` must start
    with 'dedupe:' so the rejections stay proposals; `storage.decisions.undo(con, session)` reverts them.
    """
    if not session.startswith("dedupe:"):
        raise ValueError(f"keep-best's session must start with 'dedupe:', not {session!r}")
    state = review_state(con).set_index("image_id")
    by_person = {int(i): d for i, d, p in zip(state.index, state["decision"], state["by_person"]) if p}
    current = {int(i): d for i, d in zip(state.index, state["decision"])}
    kept, rejected, left_alone = [], [], 0
    for cluster in found:
        ids = cluster.image_ids
        keep = [i for i in ids if by_person.get(i) == "accepted"]
        if not keep:
            keep = [next((i for i in ids if by_person.get(i) != "rejected"), ids[0])]
        kept += keep
        for i in ids:
            if i in by_person:
                left_alone += 1
            elif i not in keep and current.get(i) != "rejected":
                rejected.append(i)
    action = decide(con, rejected, "rejected", session=session, note="near-duplicate of a kept image")
    return KeepBestReport(len(found), kept, rejected, left_alone, action)

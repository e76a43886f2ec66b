"""The background scoring job: scan, decode once, score in batches, commit each batch.

Reading, decoding and the cheap per-image scorers run ahead in a small thread pool (Pillow, NumPy and
OpenCV release the GIL, so this uses every core) while the job thread runs the batched model scorers
on the previous batch and writes it in one transaction. A kill loses at most the batch
in flight; the next run's work list skips everything committed, so nothing is scored twice.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import duckdb
import pandas as pd

import scorers as scorer_registry
from curator.decode import DecodeError, decode, read_file
from curator.scan import folder_missing, scan
from scorers.base import DecodedImage, Scorer, WeightsUnavailable
from storage import db as storage_db
from storage.db import disk_full
from storage.images import WorkItem, sync_scan, work_list
from storage.ranking import refresh_view
from storage.scores import ImageResult, MetricInfo, sync_metrics, write_results


@dataclass
class Progress:
    """A snapshot the CLI bar and the UI poll. Counts are of this run's work list."""

    state: str = "idle"            # idle | loading | scanning | scoring | done | cancelled | failed
    total: int = 0                 # images this run has to look at
    done: int = 0                  # of those, finished (scored, skipped as unchanged, or broken)
    errors: int = 0                # broken images found by this run
    unchanged: int = 0             # images skipped: already scored, or known broken, and unchanged
    started: float | None = None
    finished: float | None = None
    message: str = ""
    unavailable: dict[str, str] = field(default_factory=dict)   # scorer -> reason

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.done / self.total

    @property
    def rate(self) -> float:
        """Images per second so far."""
        if not self.started or self.done == 0:
            return 0.0
        return self.done / max((self.finished or time.time()) - self.started, 1e-9)

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    @property
    def running(self) -> bool:
        return self.state in ("loading", "scanning", "scoring")


class ScoringStopped(RuntimeError):
    """Something outside Curator stopped the run (the dataset folder went away, the disk filled up);
    the message says what, and what to do. Every batch committed before it is kept."""


def stop_reason(root: Path, error: BaseException | None = None) -> str | None:
    """A reason a person can act on, when the dataset folder is gone or `error` means a full disk."""
    gone = folder_missing(root)
    if gone:
        return f"{gone}: scoring stopped. Scores and decisions so far are kept; resume scoring once it is back."
    if error is not None and disk_full(error):
        return ("disk full: the database could not be written, scoring stopped. Everything saved before is "
                "kept; free some space, then resume scoring.")
    return None


def create_scorers(names: Sequence[str] | None, device: str = "auto", cache_dir: Path | None = None,
                   options: Mapping[str, Any] | None = None) -> list[Scorer]:
    """Instances of the named scorers (all registered ones if None); unknown names raise UnknownScorer."""
    classes = ([scorer_registry.get_scorer_class(n) for n in names] if names
               else list(scorer_registry.registered().values()))
    return [cls(device=device, cache_dir=cache_dir, options=options) for cls in classes]


def metric_infos(classes: Sequence[type[Scorer]]) -> list[MetricInfo]:
    """Metric declarations of `classes`, once per name (a subclass repeating its parent's metrics,
    as a scorer variant does, declares nothing new)."""
    infos: dict[str, MetricInfo] = {}
    for cls in classes:
        for m in cls.metrics:
            infos.setdefault(m.name, MetricInfo(m.name, cls.name, m.min, m.max, m.higher_is_better,
                                                m.default_weight, m.description))
    return list(infos.values())


def prepare_database(con: duckdb.DuckDBPyConnection, extra: Sequence[Scorer] = ()) -> None:
    """Declare every registered metric (and those of `extra` scorers) in the database and (re)build
    the `image_scores` view, so its columns are the same whichever scorers ran."""
    classes = list(scorer_registry.registered().values())
    classes += [type(s) for s in extra if type(s) not in classes]
    sync_metrics(con, metric_infos(classes))
    refresh_view(con)


@dataclass
class _Prepared:
    item: WorkItem
    result: ImageResult
    needed: list[Scorer]
    image: DecodedImage | None = None
    vanished: bool = False      # the file was gone when read: not broken, just no longer there


class ScoringJob:
    """Scores the images under `root` into `con`. Use `run()` to block or `start()` for a thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection, root: Path | str, scorers: Sequence[Scorer],
                 batch_size: int = 16, workers: int = 2) -> None:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.con = con
        self.root = Path(root)
        self.scorers = list(scorers)
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self._progress = Progress()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------
    def start(self, on_progress: Callable[[Progress], None] | None = None) -> threading.Thread:
        self._thread = threading.Thread(target=self._run_safely, args=(on_progress,), daemon=True,
                                        name="curator-scoring")
        self._thread.start()
        return self._thread

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def progress(self) -> Progress:
        with self._lock:
            return replace(self._progress, unavailable=dict(self._progress.unavailable))

    def _update(self, on_progress: Callable[[Progress], None] | None, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._progress, k, v)
        if on_progress:
            on_progress(self.progress)

    def _run_safely(self, on_progress: Callable[[Progress], None] | None) -> None:
        try:
            self.run(on_progress)
        except Exception as e:  # the thread must report, not die silently
            message = str(e) if isinstance(e, ScoringStopped) else f"{type(e).__name__}: {e}"
            self._update(on_progress, state="failed", message=message, finished=time.time())

    # -- the run -------------------------------------------------------------------------------
    def run(self, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Score everything not scored yet. Raises ScoringStopped when the folder goes away or the
        disk fills up, other errors as they are."""
        try:
            return self._run(on_progress)
        except ScoringStopped:
            raise
        except Exception as e:
            reason = stop_reason(self.root, e)
            if reason is None:
                raise
            raise ScoringStopped(reason) from e

    def _run(self, on_progress: Callable[[Progress], None] | None) -> Progress:
        self._update(on_progress, state="loading", started=time.time(), message="loading scorers")
        active = self._load_scorers(on_progress)
        versions = {s.name: s.run_version() for s in active}
        prepare_database(self.con, self.scorers)
        storage_db.set_meta(self.con, "root", str(self.root.resolve()))

        self._update(on_progress, state="scanning", message=f"scanning {self.root}")
        files = scan(self.root)
        table = pd.DataFrame({"path": [f.rel for f in files], "bytes": [f.bytes for f in files],
                              "mtime": [f.mtime for f in files], "error": [f.error for f in files]})
        summary = sync_scan(self.con, table.astype({"bytes": "Int64", "mtime": "float64", "error": "object"}))
        items = work_list(self.con, versions)
        self._update(on_progress, state="scoring", total=len(items),
                     unchanged=summary.total - len(items),
                     message=f"{len(items)} to score, {summary.new} new, {summary.changed} changed")
        self._score_all(items, active, versions, on_progress)
        state = "cancelled" if self._cancel.is_set() else "done"
        self._update(on_progress, state=state, finished=time.time(), message=state)
        return self.progress

    def _load_scorers(self, on_progress: Callable[[Progress], None] | None) -> list[Scorer]:
        active, unavailable = [], {}
        for s in self.scorers:
            status = s.availability()
            if not status.ok:
                unavailable[s.name] = status.reason
                continue
            try:
                s.load()
            except WeightsUnavailable as e:
                unavailable[s.name] = str(e)
                continue
            except Exception as e:
                unavailable[s.name] = f"failed to load: {type(e).__name__}: {e}"
                continue
            active.append(s)
        self._update(on_progress, unavailable=unavailable)
        return active

    def _score_all(self, items: list[WorkItem], active: list[Scorer], versions: dict[str, str],
                   on_progress: Callable[[Progress], None] | None) -> None:
        batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        metric_names = {s.name: s.metric_names() for s in active}
        with ThreadPoolExecutor(self.workers, thread_name_prefix="curator-decode") as pool:
            queue: deque[list[Future[_Prepared]]] = deque()
            upcoming = iter(batches)

            def submit_next() -> None:
                batch = next(upcoming, None)
                if batch is not None:
                    queue.append([pool.submit(self._prepare, item, active, versions) for item in batch])

            for _ in range(2):  # decode up to two batches ahead of scoring
                submit_next()
            try:
                while queue and not self._cancel.is_set():
                    futures = queue.popleft()
                    submit_next()
                    prepared = [f.result() for f in futures]
                    if any(p.vanished for p in prepared) and (reason := stop_reason(self.root)):
                        raise ScoringStopped(reason)   # before anything of this batch is written
                    prepared = [p for p in prepared if not p.vanished]   # the next scan drops them
                    self._score_batch(prepared)
                    results = [p.result for p in prepared]
                    write_results(self.con, results, versions, metric_names)
                    p = self.progress
                    self._update(on_progress, done=p.done + len(futures),
                                 errors=p.errors + sum(r.status == "error" for r in results))
            finally:
                for futures in queue:
                    for f in futures:
                        f.cancel()

    def _prepare(self, item: WorkItem, active: list[Scorer], versions: dict[str, str]) -> _Prepared:
        """Read, hash and (only if some scorer needs it) decode one image. Runs in the pool."""
        try:
            read = read_file(self.root / item.path)
        except DecodeError as e:
            vanished = isinstance(e.__cause__, FileNotFoundError)
            return _Prepared(item, ImageResult(item.image_id, item.sha256, "error", str(e)), [], vanished=vanished)
        needed = [s for s in active if item.runs.get(s.name) != (versions[s.name], read.sha256)]
        result = ImageResult(item.image_id, read.sha256, "ok")
        if not needed and item.status == "ok":
            return _Prepared(item, result, [])
        sizes = [s.input_size for s in needed]
        max_side = None if (not sizes or None in sizes) else max(sizes)
        try:
            image = decode(read.data, item.path, max_side)
        except DecodeError as e:
            result.status, result.error = "error", str(e)
            return _Prepared(item, result, [])
        result.width, result.height = image.original_size
        result.format = image.format
        prepared = _Prepared(item, result, needed, image)
        for scorer in needed:
            if scorer.per_image:
                self._record(scorer, [prepared])
        return prepared

    def _score_batch(self, prepared: list[_Prepared]) -> None:
        """Run every needed batch scorer over the batch (per-image ones already ran on the pool)."""
        for scorer in self.scorers:
            targets = [p for p in prepared if p.image is not None and scorer in p.needed and not scorer.per_image]
            if targets:
                self._record(scorer, targets)
        for p in prepared:
            if p.image is not None:
                p.result.embeddings.update(p.image.embeddings)
                p.image = None  # free pixels as soon as the batch is scored

    @classmethod
    def _record(cls, scorer: Scorer, targets: list[_Prepared]) -> None:
        """Score `targets` with one scorer and keep the declared metrics; if the batch fails, each image
        is retried alone so a scorer failing on one image fails only that image."""
        try:
            outputs = scorer.score_batch([p.image for p in targets])
            if len(outputs) != len(targets):
                raise RuntimeError(f"returned {len(outputs)} results for {len(targets)} images")
        except Exception:
            outputs = [cls._score_one(scorer, p) for p in targets]
        names = scorer.metric_names()
        for p, out in zip(targets, outputs):
            if out is not None:
                p.result.scores[scorer.name] = {n: out.get(n) for n in names}

    @staticmethod
    def _score_one(scorer: Scorer, p: _Prepared) -> dict[str, float | None] | None:
        try:
            return scorer.score_batch([p.image])[0]
        except Exception as e:
            p.result.scorer_errors[scorer.name] = f"{type(e).__name__}: {e}"
            return None

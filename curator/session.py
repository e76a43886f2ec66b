"""The datasets a running app has open: one DuckDB connection, one scoring job and one thumbnail
cache per dataset, shared by every browser tab looking at it.

Tabs keep only the key of the dataset they show (its resolved root); everything they do goes through
the `OpenDataset` here, so two tabs on one dataset share its connection and see each other's
decisions, and a dataset opened twice is not scored twice.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from curator.access import check_folder, uploads_dir
from curator.job import Progress, ScoringJob, create_scorers, prepare_database
from curator.paths import dataset_dir, default_db
from curator.scan import folder_missing, is_image_name
from curator.thumbnails import GALLERY_SIZE, PREVIEW_SIZE, ThumbnailCache
from curator.uploads import Extracted, extract_zip
from storage import browse
from storage.db import connect, get_setting, set_setting
from storage.ranking import CacheState, cache_state, ensure_normalised
from storage.scores import MetricInfo, metric_catalogue

PER_PAGE = 48
REFERENCE = "identity_reference"   # settings key: the folder of the character's reference photos


@dataclass(frozen=True)
class ScoringOptions:
    """How the app scores the datasets it opens (from app.py's command line)."""

    scorers: Sequence[str] | None = None    # None: every registered scorer
    device: str = "auto"
    batch_size: int = 16


@dataclass(frozen=True)
class PageView:
    page: browse.Page
    thumbnails: list[Path]      # one per row of page.rows
    number: int                 # 1-based
    pages: int
    version: str                # changes when scores or decisions change: the tab re-renders then


class OpenDataset:
    """One dataset folder, its database and its background scoring."""

    def __init__(self, root: Path, db_path: Path, options: ScoringOptions) -> None:
        self.root = root
        self.db_path = db_path
        self.options = options
        self.con = connect(db_path)
        prepare_database(self.con)      # metrics known (sliders, filters) before anything is scored
        self.thumbs = ThumbnailCache(dataset_dir(root) / "thumbs")
        self.exports = dataset_dir(root) / "exports"    # what the dashboard exports, offered as a zip
        self.job: ScoringJob | None = None
        self._scorers: list[str] = []
        self._distributions: dict[str, dict[str, browse.Distribution]] = {}   # cache version -> metrics
        self._ensembles: dict[tuple, browse.Distribution] = {}                 # (version, weights) -> ensemble
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return str(self.root)

    @property
    def name(self) -> str:
        return self.root.name

    # -- scoring -------------------------------------------------------------------------------------
    def start_scoring(self) -> bool:
        """Start an incremental scoring run unless one is running; True if one was started."""
        with self._lock:
            if self.job is not None and self.job.progress.running:
                return False
            reference = self.reference()
            scorers = create_scorers(self.options.scorers, self.options.device,
                                     options={"reference_dir": str(reference)} if reference else None)
            self._scorers = [s.name for s in scorers]
            self.job = ScoringJob(self.con, self.root, scorers, batch_size=self.options.batch_size)
            self.job.start()
            return True

    def cancel_scoring(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def restart_scoring(self) -> None:
        """Stop the running job between batches and start one with the settings as they are now."""
        job = self.job
        if job is not None:
            job.cancel()
            job.join()
        self.start_scoring()

    def reference(self) -> Path | None:
        """The folder of reference photos the identity scorer compares faces with, if one was set."""
        value = get_setting(self.con, REFERENCE)
        return Path(value) if value else None

    def set_reference(self, folder: Path | str, rescore: bool = True) -> Path:
        """Remember `folder` as the character's reference photos, with the dataset (so it survives a
        restart), and score again so identity is computed; other scores are kept (incremental)."""
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ValueError(f"reference folder not found: {folder}")
        if not any(is_image_name(p.name) for p in folder.rglob("*") if p.is_file()):
            raise ValueError(f"no images in reference folder {folder}")
        set_setting(self.con, REFERENCE, str(folder))
        if rescore:
            self.restart_scoring()
        return folder

    def problem(self) -> str | None:
        """What keeps this dataset from being scored or shown in full right now: its folder gone, or
        thumbnails that cannot be saved (a full disk)."""
        gone = folder_missing(self.root)
        if gone is None:
            return self.thumbs.write_error
        progress = self.progress()
        if progress and progress.state == "failed" and gone in progress.message:
            return None   # the run it stopped says so already
        return f"{gone}. Reviewing goes on with the thumbnails already made; decisions are kept."

    def progress(self) -> Progress | None:
        return self.job.progress if self.job is not None else None

    @property
    def scoring(self) -> bool:
        return self.job is not None and self.job.progress.running

    def scorers_in_use(self) -> set[str]:
        """Scorers this dataset has values from, or is being scored with (and that could load)."""
        progress = self.progress()
        unavailable = set(progress.unavailable) if progress else set()
        counts = browse.value_counts(self.con)
        have = {m.scorer for m in self.metrics() if counts.get(m.name)}
        return have | (set(self._scorers) - unavailable)

    # -- reading -------------------------------------------------------------------------------------
    def metrics(self) -> list[MetricInfo]:
        return metric_catalogue(self.con)

    def fresh(self) -> CacheState:
        """The normalised cache, current when idle; while scoring, rebuilt at most every few seconds
        (longer on big datasets) so that re-ranking stays instant."""
        if not self.scoring:
            return ensure_normalised(self.con)
        state = cache_state(self.con)
        return ensure_normalised(self.con, max(2.0, 5 * state.seconds) if state else 0.0)

    def version(self, state: CacheState | None = None) -> str:
        """Changes whenever what any tab shows may have changed (scores or anyone's decisions)."""
        return f"{(state or self.fresh()).version}#{browse.review_version(self.con)}"

    def page(self, view: browse.View, number: int, per_page: int = PER_PAGE) -> PageView:
        """Page `number` (1-based, clamped to the pages there are) with its thumbnails. The rows of
        the next page come with the same query, and their thumbnails are made in the background."""
        version = self.version()
        number = max(1, int(number))
        both = browse.page(self.con, view, (number - 1) * per_page, 2 * per_page)
        pages = max(1, -(-both.total // per_page))
        if number > pages:
            number = pages
            both = browse.page(self.con, view, (number - 1) * per_page, 2 * per_page)
        rows, upcoming = both.rows.iloc[:per_page], both.rows.iloc[per_page:]
        thumbs = self.thumbs.many(self._sources(rows), GALLERY_SIZE)
        self.thumbs.prefetch(self._sources(upcoming), GALLERY_SIZE)
        return PageView(browse.Page(rows.reset_index(drop=True), both.total, both.offset), thumbs, number, pages,
                        version)

    def distributions(self, weights: Mapping[str, float]) -> dict[str, browse.Distribution]:
        """Every metric's and the ensemble's distribution over the dataset, remembered until the
        scores (metrics) or the weights (ensemble) change: reviewing, a decision a second, redraws
        the page without re-reading a single score."""
        state = cache_state(self.con)
        version = state.version if state else ""
        weights_key = tuple(sorted(weights.items()))
        with self._lock:
            metrics = self._distributions.get(version)
            ensemble = self._ensembles.get((version, weights_key))
        if metrics is None:
            metrics = browse.distributions(self.con)
        if ensemble is None:
            ensemble = browse.ensemble_distribution(self.con, weights)
        with self._lock:
            self._distributions = {version: metrics}
            if len(self._ensembles) >= 8:
                self._ensembles.pop(next(iter(self._ensembles)))
            self._ensembles[(version, weights_key)] = ensemble
        return {browse.ENSEMBLE: ensemble, **metrics}

    def preview(self, image_id: int, prefetch: Sequence[int] = ()) -> Path | None:
        """A large (1024 px) preview of the image; those of `prefetch` are made in the background."""
        record = browse.image_record(self.con, image_id)
        if record is None:
            return None
        upcoming = [browse.image_record(self.con, i) for i in prefetch]
        self.thumbs.prefetch([(self.root / r["path"], r["sha256"]) for r in upcoming if r], PREVIEW_SIZE)
        return self.thumbs.get(self.root / record["path"], record["sha256"], PREVIEW_SIZE)

    def _sources(self, rows) -> list[tuple[Path, str | None]]:
        return [(self.root / p, s if isinstance(s, str) else None) for p, s in zip(rows["path"], rows["sha256"])]

    def close(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job.join(30)
        self.thumbs.close()
        self.con.close()


class Workspace:
    """The datasets this process has open, by resolved root folder, and who may see each: the ones
    opened for everyone (the dataset the app started on), and every other one only by the users who
    opened it. Without login every tab's user is None, so all tabs share everything as before."""

    def __init__(self, options: ScoringOptions = ScoringOptions()) -> None:
        self.options = options
        self._open: dict[str, OpenDataset] = {}
        self._public: set[str] = set()
        self._readers: dict[str, set[str | None]] = {}
        self._lock = threading.Lock()

    def open(self, root: Path | str, db: Path | None = None, score: bool = True, user: str | None = None,
             public: bool = False, reference: Path | None = None) -> OpenDataset:
        """Open a dataset folder (again: the same object) for `user`, or for everyone, and start scoring
        what is new in it (with `reference` as the identity scorer's reference photos, if given)."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise ValueError(f"dataset folder not found: {root}")
        with self._lock:
            dataset = self._open.get(str(root))
            if dataset is None:
                dataset = OpenDataset(root, Path(db) if db else default_db(root), self.options)
                self._open[str(root)] = dataset
            if public:
                self._public.add(dataset.key)
            else:
                self._readers.setdefault(dataset.key, set()).add(user)
        if reference is not None:
            dataset.set_reference(reference, rescore=False)
        if score:
            dataset.start_scoring()
        return dataset

    def open_folder(self, folder: Path | str, user: str | None = None) -> OpenDataset:
        """Open a folder a user typed the path of, if this app lets users do that (curator.access)."""
        check_folder(Path(folder), user)
        return self.open(folder, user=user)

    def open_zip(self, zip_path: Path | str, name: str | None = None, user: str | None = None
                 ) -> tuple[OpenDataset, Extracted]:
        """Extract an uploaded zip (safely, see curator.uploads) into `user`'s uploads folder and open
        the folder it became, for that user."""
        extracted = extract_zip(zip_path, name, uploads_dir(user))
        return self.open(extracted.root, user=user), extracted

    def get(self, key: str, user: str | None = None) -> OpenDataset | None:
        """The open dataset `key` if `user` may see it: a key sent by another user's tab gets None."""
        with self._lock:
            if key in self._public or user in self._readers.get(key, ()):
                return self._open.get(key)
        return None

    def served_folders(self, user: str | None) -> list[Path]:
        """The folders whose files the web server may hand to `user`: the thumbnails and exports of the
        datasets they may see (never a dataset's own images)."""
        with self._lock:
            keys = [k for k in self._open if k in self._public or user in self._readers.get(k, ())]
            return [folder for k in keys for folder in (self._open[k].thumbs.folder, self._open[k].exports)]

    def close(self) -> None:
        with self._lock:
            for dataset in self._open.values():
                dataset.close()
            self._open.clear()

"""Near-duplicates, selection and export in the dashboard: a full-width section under the review columns.

Gradio wiring only; the work is `curator.dedupe`, `curator.selection` and `curator.export`. Decisions
made here (keep best of each cluster, a proposed selection) go to DuckDB like any other, so the
review gallery of every tab picks them up on its next timer tick. They are proposals, recorded under
sessions 'dedupe:keep-best:<tab>' and 'selection:<strategy>:<tab>' (never a person's own decision,
so a later proposal may replace them), and this section's own Undo buttons revert them; the review
U key undoes the reviewer's own clicks only. Exports go to a Curator-owned folder per dataset
(re-exported in place, idempotently) and are offered as a zip.
"""
from __future__ import annotations

import threading
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from curator.dedupe import (
    DEFAULT_COSINE,
    DEFAULT_HAMMING,
    MAX_HAMMING,
    MIN_COSINE,
    Cluster,
    DuplicateIndex,
    keep_best_of_each_cluster,
)
from curator.dedupe import describe as describe_clusters
from curator.export import CONVERSIONS, CROPS, ExportError, ExportOptions, export, export_zip
from curator.selection import STRATEGIES, SelectionError, propose, select
from curator.serving import HIDDEN_API
from curator.thumbnails import GALLERY_SIZE
from storage.decisions import undo
from storage.selection import image_files, vectors_signature

if TYPE_CHECKING:
    from curator.session import OpenDataset
    from curator.ui import Dashboard

PREVIEW_LIMIT = 120   # thumbnails shown for a selection (all of it is proposed / exported)


class ExportSection:
    """The section's widgets and handlers; one instance per dashboard, shared by every tab."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dash = dashboard
        self._indexes: dict[str, tuple[str, DuplicateIndex]] = {}   # dataset key -> (signature, index)
        self._lock = threading.Lock()

    def _index(self, ds: OpenDataset) -> DuplicateIndex:
        """The dataset's pair index at the loosest thresholds the sliders offer, found once and kept
        until a scoring run changes the stored vectors: moving a slider only re-clusters."""
        con = ds.con.cursor()
        try:
            signature = vectors_signature(con)
            with self._lock:
                cached = self._indexes.get(ds.key)
            if cached is not None and cached[0] == signature:
                return cached[1]
            index = DuplicateIndex.build(con)
        finally:
            con.close()
        with self._lock:
            self._indexes[ds.key] = (signature, index)
        return index

    # -- layout ----------------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Accordion("Near-duplicates · selection · export", open=False, elem_id="cur-export-section"):
            with gr.Tabs():
                with gr.Tab("Near-duplicates"):
                    self._duplicates()
                with gr.Tab("Selection"):
                    self._selection()
                with gr.Tab("Export"):
                    self._export()
        self._wire()

    def _duplicates(self) -> None:
        with gr.Row(equal_height=True):
            self.hamming = gr.Slider(0, MAX_HAMMING, value=DEFAULT_HAMMING, step=1, scale=3,
                                     label="Hash distance (bits of 64): higher groups looser")
            self.cosine = gr.Slider(MIN_COSINE, 1.0, value=DEFAULT_COSINE, step=0.005, scale=3,
                                    label="CLIP similarity (when stored): lower groups looser")
            self.find = gr.Button("Find near-duplicates", variant="primary", scale=1, elem_id="cur-dup-find")
        self.dup_summary = gr.HTML(elem_id="cur-dup-summary")
        with gr.Row(equal_height=True):
            self.prev_cluster = gr.Button("◀ cluster", size="sm", scale=0, min_width=90)
            self.cluster_no = gr.Number(value=1, precision=0, minimum=1, show_label=False, scale=0, min_width=80)
            self.next_cluster = gr.Button("cluster ▶", size="sm", scale=0, min_width=90)
            self.keep_best = gr.Button("Keep best of each cluster (rejects the rest)", variant="stop",
                                       scale=2, elem_id="cur-keep-best")
            self.undo_keep = gr.Button("Undo keep-best", scale=1, elem_id="cur-keep-best-undo")
        self.cluster_gallery = gr.Gallery(columns=8, height="auto", object_fit="contain", allow_preview=False,
                                          show_label=False, elem_id="cur-cluster", buttons=[], interactive=False)
        self.clusters = gr.State([])

    def _selection(self) -> None:
        with gr.Row(equal_height=True):
            self.strategy = gr.Dropdown(list(STRATEGIES), value="diverse", label="Strategy", scale=2,
                                        elem_id="cur-sel-strategy")
            self.k = gr.Number(value=400, precision=0, minimum=1, label="K (target size)", scale=1,
                               elem_id="cur-sel-k")
            self.diversity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, scale=2,
                                       label="Diversity (diverse): 0 quality only, 1 coverage only")
            self.min_ensemble = gr.Number(value=None, label="Minimum ensemble (0 = none)", scale=1)
            self.bands = gr.Number(value=5, precision=0, minimum=1, label="Bands (stratified)", scale=1)
            self.min_identity = gr.Number(value=None, label="Minimum identity similarity (0 = none)", scale=1)
        with gr.Row(equal_height=True):
            self.preview_sel = gr.Button("Preview selection", variant="primary", elem_id="cur-sel-preview")
            self.propose_sel = gr.Button("Propose as decisions (never over yours)", elem_id="cur-sel-propose")
            self.undo_sel = gr.Button("Undo the last proposal", elem_id="cur-sel-undo")
        self.sel_summary = gr.HTML(elem_id="cur-sel-summary")
        self.sel_gallery = gr.Gallery(columns=8, height="auto", object_fit="contain", allow_preview=False,
                                      show_label=False, elem_id="cur-selection", buttons=[], interactive=False)
        self.sel_ids = gr.State([])
        self.last_proposal = gr.State(None)   # (session, number of actions) of this tab's last proposal

    def _export(self) -> None:
        with gr.Row(equal_height=True):
            self.source = gr.Radio([("accepted images", "accepted"), ("the previewed selection", "selection")],
                                   value="accepted", label="Export", scale=2, elem_id="cur-exp-source")
            self.layout = gr.Radio([("kohya: <repeats>_<trigger> <class>/", "kohya"), ("flat", "flat")],
                                   value="kohya", label="Layout", scale=2)
            self.trigger = gr.Textbox(label="Trigger word", placeholder="ohwx", scale=1, elem_id="cur-exp-trigger")
            self.class_token = gr.Textbox(label="Class", placeholder="woman", scale=1, elem_id="cur-exp-class")
            self.repeats = gr.Number(value=10, precision=0, minimum=1, label="Repeats", scale=1)
        with gr.Row(equal_height=True):
            self.template = gr.Textbox(value="{caption}", label="Caption after the trigger word "
                                       "({class} {caption} {name}; {caption} = an existing .txt next to the source)",
                                       scale=3)
            self.caption_ext = gr.Textbox(value=".txt", label="Caption extension", scale=1)
            self.resize = gr.Number(value=0, precision=0, minimum=0, label="Resize to (0 = copy untouched)", scale=1)
            self.crop = gr.Radio(list(CROPS), value="none", label="Square crop", scale=2)
            self.convert = gr.Radio(list(CONVERSIONS), value="png", label="Other formats become", scale=2)
        with gr.Row(equal_height=True):
            self.run_export = gr.Button("Export and zip", variant="primary", elem_id="cur-export-run")
            self.download = gr.DownloadButton("Download zip", visible=False, elem_id="cur-export-download")
        self.export_report = gr.HTML(elem_id="cur-export-report")

    # -- events ----------------------------------------------------------------------------------------
    def _wire(self) -> None:
        key = self.dash.key
        cluster_view = [self.dup_summary, self.cluster_gallery, self.cluster_no, self.clusters]
        self.find.click(self.on_find, [key, self.hamming, self.cosine], cluster_view, **HIDDEN_API)
        for slider in (self.hamming, self.cosine):
            slider.release(self.on_find, [key, self.hamming, self.cosine], cluster_view, **HIDDEN_API)
        self.prev_cluster.click(self.on_cluster, [key, self.clusters, self.cluster_no, gr.State(-1)],
                                [self.cluster_gallery, self.cluster_no], **HIDDEN_API)
        self.next_cluster.click(self.on_cluster, [key, self.clusters, self.cluster_no, gr.State(1)],
                                [self.cluster_gallery, self.cluster_no], **HIDDEN_API)
        self.cluster_no.submit(self.on_cluster, [key, self.clusters, self.cluster_no, gr.State(0)],
                               [self.cluster_gallery, self.cluster_no], **HIDDEN_API)
        tab = self.dash.tab
        self.keep_best.click(self.on_keep_best, [key, tab, self.clusters], [self.dup_summary], **HIDDEN_API)
        self.undo_keep.click(self.on_undo_keep, [key, tab], [self.dup_summary], **HIDDEN_API)

        sel_inputs = [key, self.strategy, self.k, self.min_ensemble, self.bands, self.diversity,
                      self.min_identity, self.hamming, self.cosine]
        self.preview_sel.click(self.on_preview, sel_inputs, [self.sel_summary, self.sel_gallery, self.sel_ids],
                               **HIDDEN_API)
        self.propose_sel.click(self.on_propose, [tab, *sel_inputs],
                               [self.sel_summary, self.sel_gallery, self.sel_ids, self.last_proposal], **HIDDEN_API)
        self.undo_sel.click(self.on_undo_proposal, [key, self.last_proposal], [self.sel_summary, self.last_proposal],
                            **HIDDEN_API)

        exp_inputs = [key, self.source, self.sel_ids, self.layout, self.trigger, self.class_token, self.repeats,
                      self.template, self.caption_ext, self.resize, self.crop, self.convert]
        self.run_export.click(self.on_export, exp_inputs, [self.export_report, self.download], **HIDDEN_API)

    # -- near-duplicates -------------------------------------------------------------------------------
    def on_find(self, request: gr.Request, key: str, hamming: float, cosine: float) -> tuple:
        ds = self.dash.dataset(key, request)
        index = self._index(ds)
        con = ds.con.cursor()
        try:
            found = describe_clusters(con, index.groups(int(hamming), float(cosine)))
        finally:
            con.close()
        dupes = sum(len(c.members) - 1 for c in found)
        summary = (f"<div class='cur-dup-summary' data-clusters='{len(found)}'><b>{len(found):,}</b> clusters, "
                   f"<b>{dupes:,}</b> near-duplicates of a better image · perceptual hashes for "
                   f"{index.hashed:,} images, CLIP embeddings for {index.embedded:,}</div>")
        return summary, self._cluster_items(ds, found, 1), 1, found

    def on_cluster(self, request: gr.Request, key: str, found: list[Cluster], number: float, step: int) -> tuple:
        n = 1 if not found else min(max(1, int(number or 1) + step), len(found))
        return self._cluster_items(self.dash.dataset(key, request), found, n), n

    def _cluster_items(self, ds: OpenDataset, found: list[Cluster], n: int) -> list[tuple[str, str]]:
        if not found:
            return []
        cluster = found[n - 1]
        thumbs = self._thumbnails(ds, cluster.image_ids)
        return [(str(thumbs[m.image_id]), ("★ best · " if k == 0 else "") + f"{_fmt(m.ensemble)} · {m.path}")
                for k, m in enumerate(cluster.members)]

    def on_keep_best(self, request: gr.Request, key: str, tab: str, found: list[Cluster]) -> str:
        if not found:
            raise gr.Error("Find near-duplicates first.")
        con = self.dash.dataset(key, request).con.cursor()
        try:
            report = keep_best_of_each_cluster(con, found, session=f"dedupe:keep-best:{tab}")
        finally:
            con.close()
        return (f"<div class='cur-dup-summary' data-rejected='{len(report.rejected)}'>Kept the best of "
                f"{report.clusters:,} clusters: rejected {len(report.rejected):,} near-duplicates; "
                f"{report.left_alone:,} images you had decided on were left as they were.</div>")

    def on_undo_keep(self, request: gr.Request, key: str, tab: str) -> str:
        con = self.dash.dataset(key, request).con.cursor()
        try:
            restored = undo(con, session=f"dedupe:keep-best:{tab}")
        finally:
            con.close()
        return (f"<div class='cur-dup-summary' data-restored='{len(restored)}'>Undid the last keep-best: "
                f"{len(restored):,} images back to their earlier decision.</div>")

    # -- selection -------------------------------------------------------------------------------------
    def _select(self, ds: OpenDataset, strategy: str, k: float | None, min_ensemble: float | None, bands: float,
                diversity: float, min_identity: float | None, hamming: float, cosine: float):
        index = self._index(ds) if strategy == "diverse" else None
        con = ds.con.cursor()
        try:
            # an empty number box arrives as 0 or None: both mean "no filter"
            return select(con, strategy, int(k) if k else None, min_ensemble=min_ensemble or None,
                          bands=int(bands or 5), diversity=float(diversity), min_identity=min_identity or None,
                          hamming=int(hamming), cosine=float(cosine), index=index)
        except SelectionError as e:
            raise gr.Error(str(e)) from None
        finally:
            con.close()

    def on_preview(self, request: gr.Request, key: str, *args: Any) -> tuple:
        ds = self.dash.dataset(key, request)
        result = self._select(ds, *args)
        return self._selection_view(ds, result.summary, result.image_ids, result.reasons)

    def on_propose(self, request: gr.Request, tab: str, key: str, *args: Any) -> tuple:
        ds = self.dash.dataset(key, request)
        result = self._select(ds, *args)
        session = f"selection:{result.strategy}:{tab}"
        con = ds.con.cursor()
        try:
            report = propose(con, result, session=session)
        finally:
            con.close()
        note = (f"{result.summary}. Proposed {len(report.accepted):,} as accepted, withdrew "
                f"{len(report.retracted):,} earlier proposals, left {report.left_alone:,} of your decisions alone.")
        return (*self._selection_view(ds, note, result.image_ids, result.reasons), (session, len(report.actions)))

    def on_undo_proposal(self, request: gr.Request, key: str, last: tuple[str, int] | None) -> tuple:
        if not last:
            raise gr.Error("This tab has no proposal to undo.")
        session, actions = last
        con = self.dash.dataset(key, request).con.cursor()
        try:
            restored = {i for _ in range(actions) for i in undo(con, session=session)}
        finally:
            con.close()
        return (f"<div class='cur-sel-summary' data-restored='{len(restored)}'>Undid the last proposal: "
                f"{len(restored):,} images back to their earlier decision.</div>", None)

    def _selection_view(self, ds: OpenDataset, note: str, ids: list[int], reasons: dict[int, str]) -> tuple:
        shown = ids[:PREVIEW_LIMIT]
        thumbs = self._thumbnails(ds, shown)
        items = [(str(thumbs[i]), reasons.get(i, "")) for i in shown]
        more = f" (showing the first {PREVIEW_LIMIT})" if len(ids) > PREVIEW_LIMIT else ""
        return (f"<div class='cur-sel-summary' data-count='{len(ids)}'>{escape(note)}{more}</div>", items, ids)

    # -- export ----------------------------------------------------------------------------------------
    def on_export(self, request: gr.Request, key: str, source: str, sel_ids: list[int], layout: str, trigger: str,
                  class_token: str, repeats: float, template: str, caption_ext: str, resize: float, crop: str,
                  convert: str) -> tuple:
        ds = self.dash.dataset(key, request)
        if source == "selection" and not sel_ids:
            raise gr.Error("Preview a selection first, or export the accepted images.")
        options = ExportOptions(layout=layout, trigger=trigger or "", class_token=class_token or "",
                                repeats=int(repeats or 1), caption_template=template or "",
                                caption_extension=caption_ext or ".txt", resize=int(resize) if resize else None,
                                crop=crop, convert=convert, relative_paths=True)
        folder = ds.exports
        con = ds.con.cursor()
        try:
            report = export(con, folder / "lora", options, sel_ids if source == "selection" else None, root=ds.root)
            archive = export_zip(report.out, folder / f"{ds.name}-lora.zip")
        except ExportError as e:
            raise gr.Error(str(e)) from None
        finally:
            con.close()
        gr.set_static_paths([folder])   # the zip is served from here, like thumbnails from theirs
        warnings = "".join(f"<li>{escape(w)}</li>" for w in report.warnings[:50])
        html = (f"<div class='cur-export-report' data-images='{report.images}'>{escape(report.summary())}; "
                f"zip: {escape(archive.name)} · dataset.toml uses paths relative to the unzipped folder"
                + (f"<ul>{warnings}</ul>" if warnings else "") + "</div>")
        return html, gr.update(value=str(archive), visible=True)

    # -- helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _thumbnails(ds: OpenDataset, ids: list[int]) -> dict[int, Path]:
        con = ds.con.cursor()
        try:
            rows = image_files(con, ids)
        finally:
            con.close()
        sources = [(ds.root / p, sha if isinstance(sha, str) else None) for p, sha in zip(rows["path"], rows["sha256"])]
        return dict(zip((int(i) for i in rows["image_id"]), ds.thumbs.many(sources, GALLERY_SIZE)))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def add_section(dashboard: Dashboard) -> ExportSection:
    """Build the section inside the dashboard's Blocks (call from `Dashboard.build`)."""
    section = ExportSection(dashboard)
    section.build()
    return section

"""The review dashboard: Gradio wiring only.

Widgets call `curator.session` (open datasets, pages with thumbnails, scoring) and `storage` functions
(decisions, detail values, histograms); markup comes from `curator.render`. Each browser tab keeps
its own id (kept in sessionStorage, so a reload is the same tab), the key of the dataset it shows,
the page and the selected image; decisions go to DuckDB at once and every tab polls once a second,
so tabs see each other's work and the scoring progress.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from curator import render, ui_export
from curator.access import check_folder, folders_allowed, user_of
from curator.presets import PRESETS, preset_weights
from curator.serving import HIDDEN_API, file_guard
from curator.session import PER_PAGE, OpenDataset, Workspace
from curator.uploads import Limits, UploadError
from storage import browse, decisions
from storage.ranking import default_weights, save_weights, saved_weights
from storage.scores import MetricInfo

SLIDER_MAX = 3.0
SORT_LABELS = {"ensemble": "ensemble (weighted)", "path": "file path"}
FIRST_PAGE = -10**9

# Keyboard shortcuts: clicks the buttons with these element ids, unless the user is typing somewhere.
HEAD = """
<script>
(() => {
  const keys = {a: "cur-accept", r: "cur-reject", u: "cur-undo", ArrowLeft: "cur-prev", ArrowRight: "cur-next"};
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    const id = keys[e.key.length === 1 ? e.key.toLowerCase() : e.key];
    const button = id && document.getElementById(id);
    if (button) { e.preventDefault(); button.click(); }
  });
})();
</script>
"""
# A tab id, and the dataset the tab shows, that survive reloads of this tab but are not shared with
# other tabs (sessionStorage).
TAB_ID_JS = """
(tab, key) => {
  let id = sessionStorage.getItem("curator-tab");
  if (!id) {
    id = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now());
    sessionStorage.setItem("curator-tab", id);
  }
  return [id, sessionStorage.getItem("curator-dataset") || key];
}
"""
REMEMBER_DATASET_JS = "(key) => { sessionStorage.setItem('curator-dataset', key); return []; }"
SHORTCUTS = ("<div class='cur-keys'><kbd>A</kbd> accept · <kbd>R</kbd> reject · <kbd>U</kbd> undo · "
             "<kbd>←</kbd> <kbd>→</kbd> previous / next</div>")


@dataclass
class _Ctx:
    """One event's inputs, parsed."""

    ds: OpenDataset
    tab: str
    view: browse.View
    number: int
    current: int | None
    ids: list[int]
    column: str          # the column the threshold editor shows


class Dashboard:
    """Builds the Blocks and holds the handlers; one instance serves every tab."""

    def __init__(self, workspace: Workspace, initial: OpenDataset) -> None:
        self.workspace = workspace
        self.initial = initial
        self.metrics: list[MetricInfo] = initial.metrics()
        self.names = [m.name for m in self.metrics]
        self.by_name = {m.name: m for m in self.metrics}
        # The dataset each page session shows once it has switched (None while a switch is under way),
        # so that a poll sent for the dataset shown before is dropped instead of drawn over the new one.
        self._shown: dict[str, str | None] = {}

    # -- layout ----------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Curator", fill_width=True) as demo:
            self.key = gr.Textbox(self.initial.key, visible=False)   # the dataset shown: its resolved root
            self.ids = gr.State([])
            self.current = gr.State(None)
            self.shown = gr.State("")      # data version the page was drawn from
            self.latest = gr.State("")     # the timer's last summary of the dataset (progress, version)
            self.thresholds = gr.State({})
            self.tab = gr.Textbox(visible=False)
            with gr.Row(equal_height=True):
                self.title = gr.HTML()
                self.counts = gr.HTML(elem_id="cur-counts-box")
                self.progress = gr.HTML(elem_id="cur-progress-box")
                self.stop = gr.Button("Stop scoring", size="sm", variant="secondary", scale=0, min_width=110)
                self.resume = gr.Button("Resume scoring", size="sm", variant="secondary", scale=0, min_width=110,
                                        elem_id="cur-resume")
            with gr.Row():
                with gr.Column(scale=5, min_width=300):
                    self._controls()
                with gr.Column(scale=12, min_width=480):
                    self._gallery()
                with gr.Column(scale=7, min_width=340):
                    self._detail()
            ui_export.add_section(self)
            self.timer = gr.Timer(1.0)
            self._wire(demo)
        return demo

    def _controls(self) -> None:
        with gr.Tabs():
            with gr.Tab("Weights"):
                with gr.Row():
                    self.preset = gr.Dropdown(list(PRESETS), label="Preset", value=None, scale=3)
                    self.reset = gr.Button("Reset to defaults", size="sm", scale=1)
                gr.HTML("<div class='cur-keys'>Moving a slider re-ranks at once; weights are saved with the "
                        "dataset. ↑ higher is better, ↓ lower is better.</div>")
                self.sliders: list[gr.Slider] = []
                self.groups: dict[str, gr.Accordion] = {}
                for scorer in dict.fromkeys(m.scorer for m in self.metrics):
                    with gr.Accordion(scorer, open=True) as group:
                        self.groups[scorer] = group
                        for m in (m for m in self.metrics if m.scorer == scorer):
                            self.sliders.append(gr.Slider(
                                0.0, SLIDER_MAX, value=m.default_weight, step=0.05,
                                label=f"{m.name} {'↑' if m.higher_is_better else '↓'}",
                                elem_id=f"w-{m.name}", elem_classes=["cur-weight"]))
            with gr.Tab("Filter"):
                self.decision = gr.Radio(list(browse.DECISION_FILTERS), value="all", label="Decision")
                self.status = gr.Radio([("all", "all"), ("scored", "ok"), ("errors", "error"),
                                        ("not scored yet", "pending")], value="all", label="Status")
                columns = ["ensemble", *self.names]
                self.thr_column = gr.Dropdown(columns, value="ensemble", label="Threshold on")
                self.histogram = gr.HTML()
                with gr.Row():
                    # Text, not gr.Number: an empty box must mean "no bound", not 0.
                    self.thr_lo = gr.Textbox(label="min", placeholder="no minimum", elem_id="cur-thr-lo")
                    self.thr_hi = gr.Textbox(label="max", placeholder="no maximum", elem_id="cur-thr-hi")
                self.thr_summary = gr.HTML(render.filters_summary({}))
                self.thr_clear = gr.Button("Clear thresholds", size="sm")
            with gr.Tab("Dataset"):
                # Off on a shared server (curator.access): there the only way in is a zip.
                self.folder = gr.Textbox(label="Open a folder on this machine", placeholder="/path/to/images",
                                         visible=folders_allowed())
                self.open_folder = gr.Button("Open and score", variant="primary", visible=folders_allowed())
                self.upload = gr.File(label="…or upload a zip of images", file_types=[".zip"], type="filepath",
                                      elem_id="cur-upload")
                self.dataset_info = gr.HTML(elem_id="cur-dataset-info")
                # Read-only until the page load fills in the stored folder, so that load cannot replace
                # what someone typed in the meantime.
                self.reference_box = gr.Textbox(label="Reference photos of the character, for the identity score",
                                                placeholder="/path/to/reference/photos", elem_id="cur-reference",
                                                visible=folders_allowed(), interactive=False)
                self.reference_btn = gr.Button("Use these references and score identity", elem_id="cur-set-reference",
                                               visible=folders_allowed())

    def _gallery(self) -> None:
        with gr.Row(equal_height=True):
            self.sort = gr.Dropdown([(SORT_LABELS.get(c, c), c) for c in ["ensemble", *self.names, "path"]],
                                    value="ensemble", label="Sort by", scale=3, elem_id="cur-sort")
            self.order = gr.Radio([("descending", "desc"), ("ascending", "asc")], value="desc", label="Order",
                                  scale=2, elem_id="cur-order")
        with gr.Row(equal_height=True):
            self.first_page = gr.Button("« first", size="sm", scale=0, min_width=60)
            self.prev_page = gr.Button("◀ page", size="sm", scale=0, min_width=70, elem_id="cur-prev-page")
            self.page_no = gr.Number(value=1, precision=0, minimum=1, show_label=False, scale=0, min_width=80,
                                     elem_id="cur-page-no")
            self.next_page = gr.Button("page ▶", size="sm", scale=0, min_width=70, elem_id="cur-next-page")
            self.page_info = gr.HTML()
        self.gallery = gr.Gallery(columns=6, height="auto", object_fit="contain", allow_preview=False,
                                  show_label=False, elem_id="gallery", buttons=[], interactive=False)
        with gr.Accordion("Bulk actions (undecided images only; U undoes)", open=False):
            with gr.Row(equal_height=True):
                self.top_k = gr.Number(value=50, precision=0, minimum=1, label="K", scale=1, min_width=80,
                                       elem_id="cur-top-k")
                self.accept_top = gr.Button("Accept the top K of this view", scale=2, elem_id="cur-accept-top")
            with gr.Row(equal_height=True):
                self.bulk_column = gr.Dropdown(["ensemble", *self.names], value="ensemble", label="Reject where",
                                               scale=2)
                self.bulk_value = gr.Number(value=0.3, label="is worse than", scale=1, min_width=80)
                self.reject_below = gr.Button("Reject them", scale=1, elem_id="cur-reject-below")
        with gr.Accordion("Distributions", open=False):
            self.distributions = gr.HTML()

    def _detail(self) -> None:
        self.preview = gr.Image(type="filepath", interactive=False, show_label=False, height=420,
                                elem_id="preview", buttons=["fullscreen"])
        with gr.Row():
            self.prev_btn = gr.Button("◀", elem_id="cur-prev", min_width=50, scale=1)
            self.accept = gr.Button("Accept (A)", elem_id="cur-accept", variant="primary", min_width=90, scale=2)
            self.reject = gr.Button("Reject (R)", elem_id="cur-reject", variant="stop", min_width=90, scale=2)
            self.undo = gr.Button("Undo (U)", elem_id="cur-undo", min_width=80, scale=2)
            self.next_btn = gr.Button("▶", elem_id="cur-next", min_width=50, scale=1)
        gr.HTML(SHORTCUTS)
        self.detail = gr.HTML()
        self.values = gr.HTML()

    # -- events ----------------------------------------------------------------------------------------
    def _wire(self, demo: gr.Blocks) -> None:
        self.view_inputs = [self.key, self.tab, self.sort, self.order, self.decision, self.status,
                            self.thresholds, self.page_no, self.current, self.ids, self.thr_column, *self.sliders]
        self.page_outputs = [self.gallery, self.page_info, self.page_no, self.ids, self.current, self.shown,
                             self.preview, self.detail, self.values, self.counts, self.progress, self.histogram,
                             self.distributions, self.thr_summary, self.title, self.sort, self.thr_column,
                             self.bulk_column, *self.groups.values()]
        # Every event that redraws the page runs in one queue, in order: a redraw started earlier can
        # never land after (and overwrite) one the reviewer caused later.
        quiet = {"show_progress": "hidden", "concurrency_id": "view", "concurrency_limit": 1, **HIDDEN_API}
        live = {**quiet, "trigger_mode": "always_last"}

        demo.load(self.on_tab, [self.tab, self.key], [self.tab, self.key], js=TAB_ID_JS, queue=False,
                  **HIDDEN_API).then(
            self.on_load, self.view_inputs, [*self.page_outputs, *self.sliders, self.reference_box], **quiet)
        # The timer only polls a summary of the dataset's state (progress and a version of the data);
        # when it changes, the tab redraws what changed with its inputs as they are by then, so a poll
        # for the dataset the tab showed before a switch cannot overwrite the new one.
        self.timer.tick(self.on_tick, [self.key], [self.latest], show_progress="hidden", **HIDDEN_API)
        self.latest.change(self.on_refresh, [*self.view_inputs, self.shown], self.page_outputs, **quiet)
        demo.unload(self.on_unload)

        for slider in self.sliders:
            slider.input(self.on_weights, self.view_inputs, self.page_outputs, **live)
        self.preset.input(self.on_preset, [*self.view_inputs, self.preset], [*self.page_outputs, *self.sliders],
                          **quiet)
        self.reset.click(self.on_reset, self.view_inputs, [*self.page_outputs, *self.sliders, self.preset], **quiet)
        for control in (self.sort, self.order, self.decision, self.status):
            control.input(self.on_view, self.view_inputs, self.page_outputs, **live)

        self.thr_column.input(self.on_thr_column, self.view_inputs, [self.thr_lo, self.thr_hi, self.histogram],
                              **quiet)
        for box in (self.thr_lo, self.thr_hi):   # applied on Enter or on leaving the box
            for event in (box.submit, box.blur):
                event(self.on_threshold, [*self.view_inputs, self.thr_lo, self.thr_hi],
                      [*self.page_outputs, self.thresholds], **live)
        self.thr_clear.click(self.on_clear_thresholds, self.view_inputs,
                             [*self.page_outputs, self.thresholds, self.thr_lo, self.thr_hi], **quiet)

        self.first_page.click(self.on_page, [*self.view_inputs, gr.State(FIRST_PAGE)], self.page_outputs, **quiet)
        self.prev_page.click(self.on_page, [*self.view_inputs, gr.State(-1)], self.page_outputs, **quiet)
        self.next_page.click(self.on_page, [*self.view_inputs, gr.State(1)], self.page_outputs, **quiet)
        self.page_no.submit(self.on_page, [*self.view_inputs, gr.State(0)], self.page_outputs, **quiet)

        self.gallery.select(self.on_select, self.view_inputs, self.page_outputs, **quiet)
        self.prev_btn.click(self.on_step, [*self.view_inputs, gr.State(-1)], self.page_outputs, **quiet)
        self.next_btn.click(self.on_step, [*self.view_inputs, gr.State(1)], self.page_outputs, **quiet)
        self.accept.click(self.on_decide, [*self.view_inputs, gr.State("accepted")], self.page_outputs, **quiet)
        self.reject.click(self.on_decide, [*self.view_inputs, gr.State("rejected")], self.page_outputs, **quiet)
        self.undo.click(self.on_undo, self.view_inputs, self.page_outputs, **quiet)
        self.accept_top.click(self.on_accept_top, [*self.view_inputs, self.top_k], self.page_outputs, **quiet)
        self.reject_below.click(self.on_reject_below, [*self.view_inputs, self.bulk_column, self.bulk_value],
                                self.page_outputs, **quiet)

        self.stop.click(self.on_stop, [self.key], [self.progress], **quiet)
        self.resume.click(self.on_resume, [self.key], [self.progress], **quiet)
        self.reference_btn.click(self.on_reference, [self.key, self.reference_box],
                                 [self.reference_box, self.progress, self.dataset_info], show_progress="hidden",
                                 **HIDDEN_API)
        switched = [*self.page_outputs, *self.sliders, self.key, self.thresholds, self.dataset_info,
                    self.reference_box]
        self.open_folder.click(self.on_open_folder, [*self.view_inputs, self.folder], switched, **quiet).then(
            None, self.key, None, js=REMEMBER_DATASET_JS)
        self.upload.upload(self.on_upload, [*self.view_inputs, self.upload], switched, **quiet).then(
            None, self.key, None, js=REMEMBER_DATASET_JS)

    def _ctx(self, request: gr.Request | None, args: tuple) -> _Ctx:
        key, tab, sort, order, decision, status, thresholds, number, current, ids, column = args[:11]
        values = args[11:11 + len(self.sliders)]
        weights = {n: float(v) for n, v in zip(self.names, values)}
        ds = self.dataset(key, request)
        view = browse.View(weights=weights, sort=sort or "ensemble", descending=order != "asc",
                           decision=decision or "all", status=status or "all", thresholds=dict(thresholds or {}))
        return _Ctx(ds, tab or "", view, int(number or 1), current, list(ids or []), column or "ensemble")

    def dataset(self, key: str, request: gr.Request | None) -> OpenDataset:
        """The dataset a tab asks for by key if its user may see it, else the one the app started on."""
        return self.workspace.get(key, user_of(request)) or self.initial

    # -- rendering -------------------------------------------------------------------------------------
    def _render(self, ctx: _Ctx, number: int, choose: Callable[[list[int]], int | None] | None = None
                ) -> dict[Any, Any]:
        """Everything a tab shows for its dataset, view and page. `choose` picks the selected image
        from the page's ids (default: keep the current one, or the first when there is none)."""
        ds, view = ctx.ds, ctx.view
        pv = ds.page(view, number)
        ids = [int(i) for i in pv.page.rows["image_id"]]
        current = (choose or self._keep(ctx))(ids)
        items = [(str(path), render.caption(pv.page.offset + i + 1, row, view.sort))
                 for i, (path, (_, row)) in enumerate(zip(pv.thumbnails, pv.page.rows.iterrows()))]
        out = {
            self.gallery: gr.update(value=items, selected_index=ids.index(current) if current in ids else None),
            self.page_info: render.page_label(pv.number, pv.pages, pv.page.total),
            self.page_no: pv.number,
            self.ids: ids,
            self.shown: pv.version,
            self.title: f"<div class='cur-title'><b>Curator</b> · {render.escape(ds.name)}</div>",
            **self._status(ds),
        }
        in_use = ds.scorers_in_use()
        columns = ["ensemble", *[m.name for m in self.metrics if m.scorer in in_use]]
        out.update(self._thresholds_view(ds, view, columns, ctx.column))
        out.update(self._detail_view(ds, current, ids, pv.page.offset, view, columns))
        out.update({group: gr.update(visible=name in in_use) for name, group in self.groups.items()})
        out[self.sort] = gr.update(choices=[(SORT_LABELS.get(c, c), c) for c in [*columns, "path"]])
        out[self.thr_column] = gr.update(choices=columns)
        out[self.bulk_column] = gr.update(choices=columns)
        return out

    def _columns(self, ds: OpenDataset) -> list[str]:
        """'ensemble' and the metrics of the scorers this dataset has values from or is being scored
        with: a scorer that is not installed or has no weights leaves no empty rows and sliders."""
        in_use = ds.scorers_in_use()
        return ["ensemble", *[m.name for m in self.metrics if m.scorer in in_use]]

    @staticmethod
    def _keep(ctx: _Ctx) -> Callable[[list[int]], int | None]:
        return lambda ids: ctx.current if ctx.current is not None else (ids[0] if ids else None)

    @staticmethod
    def _first(ids: list[int]) -> int | None:
        return ids[0] if ids else None

    def _detail_view(self, ds: OpenDataset, current: int | None, ids: list[int], offset: int,
                     view: browse.View, columns: list[str]) -> dict[Any, Any]:
        """The selected image: preview, file facts, decision, every value with its percentile."""
        if current is None:
            return {self.current: None, self.preview: None, self.detail: render.detail_html(None), self.values: ""}
        at = ids.index(current) if current in ids else None
        row = browse.image_row(ds.con, current, view.weights)
        return {
            self.current: current,
            self.preview: ds.preview(current, prefetch=ids[at + 1:at + 3] if at is not None else ()),
            self.detail: render.detail_html(browse.image_record(ds.con, current),
                                            offset + at + 1 if at is not None else None),
            self.values: render.values_html(browse.values_of(row, ds.distributions(view.weights), columns),
                                            self.by_name, view.weights),
        }

    def _status(self, ds: OpenDataset) -> dict[Any, Any]:
        return {
            self.counts: render.counts_html(decisions.counts(ds.con)),
            self.progress: _progress_html(ds),
        }

    def _thresholds_view(self, ds: OpenDataset, view: browse.View, columns: list[str], column: str
                         ) -> dict[Any, Any]:
        dists = ds.distributions(view.weights)
        hists = {c: dists[c].histogram for c in columns if c in dists}
        return {
            self.distributions: render.distributions_html(hists, self.by_name, view.thresholds),
            self.histogram: self._histogram(hists, column, view),
            self.thr_summary: render.filters_summary(view.thresholds),
        }

    def _histogram(self, hists: dict, column: str, view: browse.View) -> str:
        h = hists.get(column)
        return render.histogram_block(h, self.by_name.get(column), view.thresholds.get(column)) if h else ""

    def _slider_values(self, weights: dict[str, float]) -> dict[Any, Any]:
        return {s: weights.get(n, self.by_name[n].default_weight) for s, n in zip(self.sliders, self.names)}

    # -- handlers --------------------------------------------------------------------------------------
    def on_tab(self, request: gr.Request, tab: str, key: str) -> tuple[str, str]:
        """The tab's id, and the dataset it showed before a reload if this process still has it open
        (and it is this user's)."""
        return tab, self.dataset(key, request).key

    def on_load(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        weights = {**default_weights(self.metrics), **saved_weights(ctx.ds.con)}
        ctx.view = browse.View(weights=weights)
        return {**self._render(ctx, 1, self._first), **self._slider_values(weights),
                self.reference_box: gr.update(value=str(ctx.ds.reference() or ""), interactive=True)}

    def on_tick(self, request: gr.Request, key: str) -> str:
        ds = self.dataset(key, request)
        p = ds.progress()
        progress = f"{p.state}:{p.done}:{p.errors}:{len(p.unavailable)}" if p else ""
        return f"{ds.key}|{progress}|{ds.problem() or ''}|{ds.version()}"

    def on_refresh(self, request: gr.Request, *args) -> dict:
        """Progress and counts always; the page only when the data or anyone's decisions changed."""
        session = _session(request)
        if session in self._shown and self._shown[session] != args[0]:
            return gr.skip()   # asked for the dataset shown before a switch: answering would draw it back
        ctx = self._ctx(request, args[:-1])
        if ctx.ds.version() == args[-1]:
            return self._status(ctx.ds)
        return self._render(ctx, ctx.number)

    def on_weights(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        save_weights(ctx.ds.con, ctx.view.weights)
        return self._render(ctx, 1)

    def on_preset(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-1])
        return self._apply_weights(ctx, preset_weights(args[-1], self.metrics))

    def on_reset(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        return {**self._apply_weights(ctx, default_weights(self.metrics)), self.preset: None}

    def _apply_weights(self, ctx: _Ctx, weights: dict[str, float]) -> dict:
        save_weights(ctx.ds.con, weights)
        ctx.view = replace(ctx.view, weights=weights)
        return {**self._render(ctx, 1), **self._slider_values(weights)}

    def on_view(self, request: gr.Request, *args) -> dict:
        return self._render(self._ctx(request, args), 1, self._first)

    def on_page(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-1])
        step = args[-1]
        return self._render(ctx, 1 if step == FIRST_PAGE else ctx.number + step, self._first)

    def on_thr_column(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        lo, hi = ctx.view.thresholds.get(ctx.column, (None, None))
        dist = ctx.ds.distributions(ctx.view.weights).get(ctx.column)
        hists = {ctx.column: dist.histogram} if dist else {}
        return {self.thr_lo: "" if lo is None else f"{lo:g}", self.thr_hi: "" if hi is None else f"{hi:g}",
                self.histogram: self._histogram(hists, ctx.column, ctx.view)}

    def on_threshold(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-2])
        try:
            lo, hi = (float(t) if (t or "").strip() else None for t in args[-2:])
        except ValueError:
            return gr.skip()   # half-typed ("0.", "-"): wait for the rest
        thresholds = dict(ctx.view.thresholds)
        if lo is None and hi is None:
            thresholds.pop(ctx.column, None)
        else:
            thresholds[ctx.column] = (lo, hi)
        ctx.view = replace(ctx.view, thresholds=thresholds)
        return {**self._render(ctx, 1, self._first), self.thresholds: thresholds}

    def on_clear_thresholds(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        ctx.view = replace(ctx.view, thresholds={})
        return {**self._render(ctx, 1, self._first), self.thresholds: {}, self.thr_lo: "", self.thr_hi: ""}

    def on_select(self, evt: gr.SelectData, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        if evt.index is None or not 0 <= evt.index < len(ctx.ids):
            return gr.skip()
        return self._move_to(ctx, ctx.ids[evt.index])

    def _move_to(self, ctx: _Ctx, image_id: int) -> dict:
        """Select another image of the page shown: only the detail panel and the highlight change."""
        out = self._detail_view(ctx.ds, image_id, ctx.ids, (ctx.number - 1) * PER_PAGE, ctx.view,
                                self._columns(ctx.ds))
        out[self.gallery] = gr.update(selected_index=ctx.ids.index(image_id))
        return out

    def on_step(self, request: gr.Request, *args) -> dict:
        """Previous / next image, crossing page boundaries."""
        ctx = self._ctx(request, args[:-1])
        step = args[-1]
        if not ctx.ids:
            return gr.skip()
        at = ctx.ids.index(ctx.current) if ctx.current in ctx.ids else (-1 if step > 0 else len(ctx.ids))
        if 0 <= at + step < len(ctx.ids):
            return self._move_to(ctx, ctx.ids[at + step])
        if (step < 0 and ctx.number <= 1) or (step > 0 and ctx.number * PER_PAGE >= self._total(ctx)):
            return gr.skip()   # first or last image of the view
        return self._render(ctx, ctx.number + step, self._first if step > 0 else lambda ids: ids[-1] if ids else None)

    def _total(self, ctx: _Ctx) -> int:
        return browse.page(ctx.ds.con, ctx.view, 0, 0).total

    def on_decide(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-1])
        decision = args[-1]
        if ctx.current is None:
            gr.Info("Select an image first (click a thumbnail).")
            return gr.skip()
        with _reported():
            decisions.decide(ctx.ds.con, [ctx.current], decision, session=ctx.tab)
        at = ctx.ids.index(ctx.current) if ctx.current in ctx.ids else None
        following = ctx.ids[at + 1:] if at is not None else []

        def move_on(ids: list[int]) -> int | None:
            """The next image that is still shown (a decision filter may have removed this one)."""
            nxt = next((i for i in following if i in ids), None)
            if nxt is not None:
                return nxt
            if ctx.current in ids or not ids:
                return ctx.current if ctx.current in ids else None
            return ids[min(at or 0, len(ids) - 1)]

        return self._render(ctx, ctx.number, move_on)

    def on_undo(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args)
        with _reported():
            touched = decisions.undo(ctx.ds.con, session=ctx.tab)
        if not touched:
            gr.Info("Nothing to undo in this tab.")
            return gr.skip()
        if len(touched) > 1:
            gr.Info(f"Undid a bulk action on {len(touched):,} images.")
            return self._render(ctx, ctx.number)
        return self._render(ctx, ctx.number, lambda ids: touched[0])

    def on_accept_top(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-1])
        k = int(args[-1] or 0)
        ids = browse.top_undecided(ctx.ds.con, ctx.view, k)
        with _reported():
            decisions.decide(ctx.ds.con, ids, "accepted", session=ctx.tab, note=f"bulk: accept top {k}")
        gr.Info(f"Accepted {len(ids):,} undecided images of the top {k:,}.")
        return self._render(ctx, ctx.number)

    def on_reject_below(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-2])
        column, value = args[-2:]
        if value is None:
            return gr.skip()
        ids = browse.undecided_worse_than(ctx.ds.con, ctx.view, column, float(value))
        with _reported():
            decisions.decide(ctx.ds.con, ids, "rejected", session=ctx.tab,
                             note=f"bulk: reject {column} worse than {value}")
        gr.Info(f"Rejected {len(ids):,} undecided images with {column} worse than {render.fmt(value)}.")
        return self._render(ctx, ctx.number)

    def on_stop(self, request: gr.Request, key: str) -> str:
        ds = self.workspace.get(key, user_of(request))
        if ds is None:
            return gr.skip()
        ds.cancel_scoring()
        return _progress_html(ds)

    def on_resume(self, request: gr.Request, key: str) -> str:
        """Score what is not scored yet: after a stop, a full disk, or the folder coming back."""
        ds = self.workspace.get(key, user_of(request))
        if ds is None:
            return gr.skip()
        if not ds.start_scoring():
            gr.Info("Scoring is already running.")
        return _progress_html(ds)

    def on_reference(self, request: gr.Request, key: str, folder: str) -> dict:
        ds = self.workspace.get(key, user_of(request))
        folder = (folder or "").strip()
        if ds is None:
            return gr.skip()
        if not folder:
            raise gr.Error("Type the path of a folder of reference photos first.")
        try:
            check_folder(Path(folder), user_of(request))   # the same rule as opening a folder by its path
            used = ds.set_reference(folder)
        except ValueError as e:   # AccessDenied included
            raise gr.Error(str(e)) from None
        return {self.reference_box: str(used), self.progress: _progress_html(ds),
                self.dataset_info: f"Identity references: <code>{render.escape(str(used))}</code>; scoring again."}

    def on_open_folder(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-1])
        folder = (args[-1] or "").strip()
        if not folder:
            raise gr.Error("Type the path of a folder of images first.")
        with self._switching(request, args[0]):
            try:
                ds = self.workspace.open_folder(Path(folder), user_of(request))
            except ValueError as e:   # AccessDenied included
                raise gr.Error(str(e)) from None
            return self._switch(request, ctx, ds, f"Opened <code>{render.escape(str(ds.root))}</code>.")

    def on_upload(self, request: gr.Request, *args) -> dict:
        ctx = self._ctx(request, args[:-1])
        upload = args[-1]
        if not upload:
            return gr.skip()
        with self._switching(request, args[0]):
            try:
                ds, extracted = self.workspace.open_zip(upload, Path(upload).name, user_of(request))
            except (UploadError, ValueError) as e:
                raise gr.Error(str(e)) from None
            skipped = "".join(f"<li>{render.escape(n)}: {render.escape(r)}</li>" for n, r in extracted.skipped[:50])
            note = (f"{extracted.images:,} images {'reopened' if extracted.reused else 'extracted'}"
                    + (f"; {len(extracted.skipped):,} entries skipped<ul>{skipped}</ul>" if extracted.skipped else "."))
            return self._switch(request, ctx, ds, note)

    def on_unload(self, request: gr.Request) -> None:
        self._shown.pop(_session(request), None)

    @contextmanager
    def _switching(self, request: gr.Request, current: str) -> Iterator[None]:
        """While a tab switches datasets its polls are dropped; if the switch fails it keeps the key
        it had (`current`)."""
        session = _session(request)
        self._shown[session] = None
        try:
            yield
        finally:
            if self._shown.get(session) is None:
                self._shown[session] = current

    def _switch(self, request: gr.Request, ctx: _Ctx, ds: OpenDataset, note: str) -> dict:
        self._shown[_session(request)] = ds.key
        gr.set_static_paths([ds.thumbs.folder])
        saved = {k: v for k, v in saved_weights(ds.con).items() if k in self.by_name}
        weights = {**default_weights(self.metrics), **saved}
        ctx.ds, ctx.view = ds, browse.View(weights=weights)
        return {**self._render(ctx, 1, self._first), **self._slider_values(weights), self.key: ds.key,
                self.thresholds: {}, self.dataset_info: note, self.reference_box: str(ds.reference() or "")}


def _progress_html(ds: OpenDataset) -> str:
    return render.progress_html(ds.progress(), ds.problem())


def _session(request: gr.Request | None) -> str:
    """The page session of an event (a reload is a new one)."""
    return getattr(request, "session_hash", None) or ""


@contextmanager
def _reported() -> Iterator[None]:
    """A decision the database refused (a full disk) becomes a message in the tab, not a traceback."""
    try:
        yield
    except decisions.NotSaved as e:
        raise gr.Error(str(e)) from None


def launch_kwargs(workspace: Workspace) -> dict[str, Any]:
    """Arguments for `Blocks.launch`: styling, the shortcut script, uploads no larger than a zip may
    be, and nothing served from disk but the thumbnail and export folders of the datasets the user
    asking may see (registered as static paths when a dataset opens; curator.serving enforces it)."""
    return {"css": render.CSS, "head": HEAD, "allowed_paths": [], "footer_links": [],
            "max_file_size": Limits().max_total_bytes,
            "app_kwargs": {"middleware": [file_guard(workspace.served_folders)]}}


def build_app(workspace: Workspace, initial: OpenDataset) -> gr.Blocks:
    gr.set_static_paths([initial.thumbs.folder])
    return Dashboard(workspace, initial).build()

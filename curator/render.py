"""HTML and SVG for the dashboard: progress, counts, captions, the detail panel, histograms.

Pure functions from values to markup, so the Gradio wiring in `curator.ui` stays short and these can
be tested without a browser. Everything that came from a file or a user (paths, error messages,
metric descriptions) is escaped: a file name is not allowed to become markup.
"""
from __future__ import annotations

import math
from datetime import datetime
from html import escape
from typing import Mapping

from curator.job import Progress
from storage.browse import ENSEMBLE, Histogram, Value
from storage.scores import MetricInfo

MARKS = {"accepted": "✓ accepted", "rejected": "✕ rejected", "undecided": ""}


def fmt(v: float | None) -> str:
    """A number for people: 4 significant digits, thousands separated, '–' when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    v = float(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}" if abs(v) >= 0.001 or v == 0 else f"{v:.2e}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_html(p: Progress | None, problem: str | None = None) -> str:
    """The scoring bar: images done / total, rate, ETA, errors, scorers that could not run, and a
    `problem` with the dataset that stops it (its folder gone, a full disk)."""
    warning = f"<div class='cur-err cur-problem'>⚠ {escape(problem)}</div>" if problem else ""
    if p is None:
        return f"<div class='cur-progress idle'>Not scoring{warning}</div>"
    pct = 100.0 if p.state == "done" else 100.0 * p.fraction if p.total else 0.0
    label = {"loading": "Loading scorers…", "scanning": "Scanning the folder…", "idle": "Waiting…"}.get(p.state)
    if label is None:
        parts = [f"<b>{escape(p.state.capitalize())}</b>", f"{p.done:,} / {p.total:,} images ({pct:.0f}%)"]
        if p.state == "scoring":
            parts += [f"{p.rate:.1f} img/s", f"ETA {duration(p.eta)}"]
        elif p.started and p.finished:
            parts.append(f"in {duration(p.finished - p.started)}")
        if p.unchanged:
            parts.append(f"{p.unchanged:,} already scored")
        parts.append(f"<span class='{'cur-err' if p.errors else ''}'>{p.errors:,} errors</span>")
        label = " · ".join(parts)
    if p.state == "failed":
        label += f" — <span class='cur-err cur-message'>{escape(p.message)}</span>"
    # Shown in full, not folded away: a scorer that did not run changes what the ranking means.
    notes = "".join(f"<li data-scorer='{escape(name)}'>⚠ <b>{escape(name)}</b>: unavailable: {escape(reason)}</li>"
                    for name, reason in p.unavailable.items())
    unavailable = f"<ul class='cur-unavailable'>{notes}</ul>" if notes else ""
    return (f"<div class='cur-progress {escape(p.state)}' data-state='{escape(p.state)}' data-done='{p.done}' "
            f"data-total='{p.total}' data-unchanged='{p.unchanged}'>"
            f"<div class='cur-bar'><div style='width:{pct:.1f}%'></div></div>"
            f"<div class='cur-progress-text'>{label}</div>{warning}{unavailable}</div>")


def counts_html(counts: Mapping[str, int]) -> str:
    return ("<div class='cur-counts' id='cur-counts'>"
            f"<span class='acc' data-n='{counts.get('accepted', 0)}'>✓ {counts.get('accepted', 0):,} accepted</span>"
            f"<span class='rej' data-n='{counts.get('rejected', 0)}'>✕ {counts.get('rejected', 0):,} rejected</span>"
            f"<span class='und' data-n='{counts.get('undecided', 0)}'>{counts.get('undecided', 0):,} undecided</span>"
            "</div>")


def caption(rank: int, row: Mapping, sort: str) -> str:
    """Gallery caption: rank, the value sorted by, the decision (the gallery CSS colours by it)."""
    if row["status"] == "error":
        text = f"#{rank} · ⚠ unreadable"
    elif row["status"] == "pending":
        text = f"#{rank} · not scored yet"
    elif sort == "path":
        text = f"#{rank} · {row['path'].rsplit('/', 1)[-1]}"
    else:
        key = sort if sort in row else ENSEMBLE
        name = "" if key == ENSEMBLE else f"{key} "
        text = f"#{rank} · {name}{fmt(row[key])}"
    mark = MARKS.get(row["decision"], "")
    return f"{text} · {mark}" if mark else text


def page_label(number: int, pages: int, total: int) -> str:
    return f"<div class='cur-page'>page <b>{number:,}</b> of {pages:,} · <b>{total:,}</b> images match</div>"


def detail_html(record: Mapping | None, rank: int | None = None) -> str:
    """The selected image's file facts and decision."""
    if record is None:
        return "<div class='cur-detail empty'>Click a thumbnail to see it here.</div>"
    decision = record["decision"]
    size = f"{record['width']:,} × {record['height']:,} px" if record["width"] else "size unknown"
    facts = [size, _bytes(record["bytes"]), escape(str(record["format"] or "").upper())]
    when = record["decided_at"]
    decided = f" <span class='cur-when'>{when:%Y-%m-%d %H:%M}</span>" if isinstance(when, datetime) else ""
    error = f"<div class='cur-err'>⚠ {escape(record['error'])}</div>" if record["error"] else ""
    return (f"<div class='cur-detail' data-image-id='{int(record['image_id'])}' data-decision='{escape(decision)}'>"
            f"<div class='cur-path' title='{escape(record['path'])}'>{escape(record['path'])}</div>"
            f"<div><span class='cur-badge {escape(decision)}'>{escape(decision)}</span>{decided}"
            f"{f' · rank #{rank:,}' if rank else ''}</div>"
            f"<div class='cur-facts'>{' · '.join(f for f in facts if f)}"
            f"{' · sha256 ' + escape(record['sha256'][:12]) if record['sha256'] else ''}</div>{error}</div>")


def values_html(values: list[Value], metrics: Mapping[str, MetricInfo], weights: Mapping[str, float]) -> str:
    """Every metric with its value, its percentile in the dataset (bar coloured by how good that is)
    and its weight."""
    if not values:
        return ""
    rows = []
    for v in values:
        m = metrics.get(v.column)
        higher = True if m is None else m.higher_is_better
        arrow = "↑" if higher else "↓"
        weight = "" if v.column == ENSEMBLE else fmt(weights.get(v.column, m.default_weight if m else 0))
        if v.percentile is None:
            bar = "<span class='cur-na'>–</span>"
        else:
            good = v.percentile if higher else 100 - v.percentile
            hue = int(good * 1.2)   # 0 = red, 120 = green
            bar = (f"<div class='cur-pbar' title='{v.percentile:.0f}% of images have a lower value'>"
                   f"<div style='width:{v.percentile:.0f}%;background:hsl({hue},60%,45%)'></div>"
                   f"<span>p{v.percentile:.0f}</span></div>")
        title = escape(m.description) if m else "weighted mean of the normalised metrics"
        rows.append(f"<tr class='{'ens' if v.column == ENSEMBLE else ''}'><td title='{title}'>{escape(v.column)} "
                    f"<span class='cur-dir'>{arrow}</span></td><td class='num'>{fmt(v.value)}</td><td>{bar}</td>"
                    f"<td class='num w'>{weight}</td></tr>")
    return ("<table class='cur-values'><thead><tr><th>metric</th><th>value</th><th>percentile</th>"
            f"<th>weight</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def histogram_svg(h: Histogram, lo: float | None = None, hi: float | None = None, width: int = 320,
                  height: int = 84) -> str:
    """Bars of the distribution; the part outside the threshold [lo, hi] greyed, its edges drawn."""
    top, bottom = 4, height - 16
    peak = max(h.counts) or 1
    span = h.hi - h.lo
    x = lambda v: (min(max(v, h.lo), h.hi) - h.lo) / span * width  # noqa: E731
    bar_w = width / len(h.counts)
    edges = h.edges
    parts = [f"<svg class='cur-hist' viewBox='0 0 {width} {height}' preserveAspectRatio='none' role='img'>"]
    for i, n in enumerate(h.counts):
        if n:
            bh = max(1.0, n / peak * (bottom - top))
            parts.append(f"<rect x='{i * bar_w + 0.5:.1f}' y='{bottom - bh:.1f}' width='{max(bar_w - 1, 0.5):.1f}' "
                         f"height='{bh:.1f}'><title>{fmt(edges[i])} – {fmt(edges[i + 1])}: {n:,}</title></rect>")
    for bound, side in ((lo, "lo"), (hi, "hi")):
        if bound is not None and math.isfinite(bound):
            bx = x(bound)
            sx, sw = (0, bx) if side == "lo" else (bx, width - bx)
            parts.append(f"<rect class='cur-out' x='{sx:.1f}' y='{top}' width='{sw:.1f}' height='{bottom - top}'/>")
            parts.append(f"<line class='cur-thr' x1='{bx:.1f}' x2='{bx:.1f}' y1='{top}' y2='{bottom}'/>")
    parts.append(f"<line class='cur-axis' x1='0' x2='{width}' y1='{bottom}' y2='{bottom}'/>")
    parts.append(f"<text x='0' y='{height - 3}'>{fmt(h.lo)}</text>")
    parts.append(f"<text x='{width}' y='{height - 3}' text-anchor='end'>{fmt(h.hi)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def histogram_block(h: Histogram, metric: MetricInfo | None, bounds: tuple[float | None, float | None] | None,
                    ) -> str:
    """One histogram with its title: name, direction, threshold, images without a value."""
    arrow = "" if metric is None else (" ↑" if metric.higher_is_better else " ↓")
    lo, hi = bounds or (None, None)
    limits = []
    if lo is not None:
        limits.append(f"≥ {fmt(lo)}")
    if hi is not None:
        limits.append(f"≤ {fmt(hi)}")
    note = f" <span class='cur-thr-note'>{' and '.join(limits)}</span>" if limits else ""
    missing = f" <span class='cur-na'>{h.missing:,} without</span>" if h.missing else ""
    return (f"<div class='cur-histbox' data-column='{escape(h.column)}'><div class='cur-histtitle'>"
            f"<b>{escape(h.column)}</b>{arrow}{note}{missing}</div>{histogram_svg(h, lo, hi)}</div>")


def distributions_html(hists: Mapping[str, Histogram], metrics: Mapping[str, MetricInfo],
                       thresholds: Mapping[str, tuple[float | None, float | None]]) -> str:
    if not hists:
        return "<div class='cur-na'>No scores yet.</div>"
    blocks = [histogram_block(h, metrics.get(name), thresholds.get(name)) for name, h in hists.items()]
    return f"<div class='cur-dists'>{''.join(blocks)}</div>"


def filters_summary(thresholds: Mapping[str, tuple[float | None, float | None]]) -> str:
    items = []
    for name, (lo, hi) in thresholds.items():
        if lo is not None:
            items.append(f"{escape(name)} ≥ {fmt(lo)}")
        if hi is not None:
            items.append(f"{escape(name)} ≤ {fmt(hi)}")
    return ("<div class='cur-filters'>Thresholds: " + (" · ".join(items) if items else "none") + "</div>")


def _bytes(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


CSS = """
.cur-progress { font-size: 0.9em; }
.cur-bar { height: 8px; background: var(--neutral-200); border-radius: 4px; overflow: hidden; margin: 2px 0 4px; }
.cur-bar > div { height: 100%; background: var(--color-accent); transition: width 0.6s; }
.cur-progress.done .cur-bar > div { background: #2e9d57; }
.cur-progress.failed .cur-bar > div { background: #c0392b; }
.cur-err { color: #c0392b; }
.cur-unavailable { font-size: 0.85em; margin: 2px 0 0; padding-left: 0; list-style: none; color: #9a6700; }
.cur-unavailable li { overflow-wrap: anywhere; }
.cur-counts { display: flex; gap: 10px; flex-wrap: wrap; font-size: 0.95em; }
.cur-counts span { padding: 3px 10px; border-radius: 12px; font-weight: 600; }
.cur-counts .acc { background: #d9f2e1; color: #1d6b3a; }
.cur-counts .rej { background: #f8dcdc; color: #8e2525; }
.cur-counts .und { background: var(--neutral-100); color: var(--neutral-700); }
.cur-page { font-size: 0.9em; padding-top: 8px; }
.cur-keys { font-size: 0.85em; opacity: 0.85; }
.cur-keys kbd { border: 1px solid var(--neutral-300); border-bottom-width: 2px; border-radius: 4px; padding: 0 5px;
  font-family: var(--font-mono); background: var(--neutral-50); }
.cur-detail .cur-path { font-family: var(--font-mono); font-size: 0.85em; word-break: break-all; font-weight: 600; }
.cur-detail .cur-facts, .cur-when { font-size: 0.85em; opacity: 0.8; }
.cur-badge { padding: 1px 8px; border-radius: 10px; font-size: 0.85em; font-weight: 600;
  background: var(--neutral-100); }
.cur-badge.accepted { background: #d9f2e1; color: #1d6b3a; }
.cur-badge.rejected { background: #f8dcdc; color: #8e2525; }
.cur-values { width: 100%; font-size: 0.85em; border-collapse: collapse; }
.cur-values td, .cur-values th { padding: 2px 4px; border-bottom: 1px solid var(--neutral-100); text-align: left; }
.cur-values td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.cur-values td.w { opacity: 0.7; }
.cur-values tr.ens { font-weight: 700; }
.cur-dir { opacity: 0.6; }
.cur-pbar { position: relative; height: 14px; min-width: 70px; background: var(--neutral-100); border-radius: 3px; }
.cur-pbar > div { height: 100%; border-radius: 3px; }
.cur-pbar > span { position: absolute; left: 4px; top: -1px; font-size: 0.85em; }
.cur-na { opacity: 0.6; }
.cur-hist { width: 100%; height: 84px; }
.cur-hist rect { fill: var(--color-accent); opacity: 0.8; }
.cur-hist rect.cur-out { fill: var(--neutral-500); opacity: 0.35; }
.cur-hist line.cur-thr { stroke: #c0392b; stroke-width: 2; stroke-dasharray: 4 2; }
.cur-hist line.cur-axis { stroke: var(--neutral-400); }
.cur-hist text { font-size: 10px; fill: var(--body-text-color); }
.cur-histtitle { font-size: 0.85em; }
.cur-thr-note { color: #c0392b; }
.cur-dists { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 8px 16px; }
.cur-filters { font-size: 0.85em; }
#gallery .thumbnail-item:has(img[alt*="✓ accepted"]) { box-shadow: 0 0 0 4px #2e9d57; }
#gallery .thumbnail-item:has(img[alt*="✕ rejected"]) { box-shadow: 0 0 0 4px #c0392b; }
#gallery .thumbnail-item:has(img[alt*="✕ rejected"]) img { opacity: 0.45; }
#gallery .thumbnail-item.selected { outline: 3px solid var(--color-accent); outline-offset: 3px; }
#preview img { object-fit: contain; }
"""

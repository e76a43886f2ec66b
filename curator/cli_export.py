"""Command line for dedupe, select and export (`python -m curator dedupe|select|export ...`).

Kept apart from `curator.cli` so the scoring commands stay short; `cli.py` adds these subparsers and
commands with one line each. Errors are raised as ExportError / SelectionError / ValueError and printed
by `cli.main` as one line.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import duckdb

from curator.dedupe import DEFAULT_COSINE, DEFAULT_HAMMING, clusters, keep_best_of_each_cluster
from curator.export import CONVERSIONS, CROPS, LAYOUTS, ExportError, ExportOptions, export, export_zip
from curator.paths import default_db
from curator.selection import STRATEGIES, Selection, SelectionError, propose, select
from storage.db import DatabaseError, connect

ERRORS = (ExportError, SelectionError)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, help="DuckDB file (default: the one `score ROOT` used, given --root)")
    p.add_argument("--root", type=Path, help="dataset folder (default: the one recorded in the database)")


def _add_thresholds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hamming", type=_count, default=DEFAULT_HAMMING,
                   help=f"near-duplicate if perceptual hashes differ in at most this many of 64 bits "
                        f"(default {DEFAULT_HAMMING})")
    p.add_argument("--cosine", type=_fraction, default=DEFAULT_COSINE,
                   help=f"or if CLIP embeddings (when stored) have at least this cosine (default {DEFAULT_COSINE})")
    p.add_argument("--no-clip", action="store_true", help="ignore CLIP embeddings")


def _add_strategy(p: argparse.ArgumentParser, default: str | None) -> None:
    choices = ("accepted", *STRATEGIES) if default == "accepted" else STRATEGIES
    p.add_argument("--strategy", choices=choices, default=default, required=default is None,
                   help="accepted: the images accepted in review; the others pick K images"
                   if default == "accepted" else "how to pick the images")
    p.add_argument("-k", "--k", type=_count, help="target size, including images you accepted")
    p.add_argument("--min-ensemble", type=float, help="minimum ensemble score (required by 'threshold')")
    p.add_argument("--bands", type=_count, default=5, help="score bands for 'stratified' (default 5)")
    p.add_argument("--diversity", type=_fraction, default=0.5,
                   help="0 = quality only, 1 = coverage only, for 'diverse' (default 0.5)")
    p.add_argument("--min-identity", type=float, help="minimum identity similarity (needs the identity scorer)")
    _add_thresholds(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dedupe", help="near-duplicate clusters; --keep-best rejects all but the best of each")
    _add_db(p)
    _add_thresholds(p)
    p.add_argument("--keep-best", action="store_true",
                   help="reject every member but the best (never over your own decisions; undoable)")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("select", help="pick K images by a strategy; --propose records them for review")
    _add_db(p)
    _add_strategy(p, None)
    p.add_argument("--propose", action="store_true",
                   help="record the result as proposed decisions (never over your own decisions; undoable)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")

    p = sub.add_parser("export", help="write a LoRA training folder (kohya layout, captions, dataset.toml)")
    p.add_argument("out", type=Path, help="output folder: new, empty, or an earlier Curator export")
    _add_db(p)
    _add_strategy(p, "accepted")
    p.add_argument("--layout", choices=LAYOUTS, default="kohya", help="kohya: OUT/<repeats>_<trigger> <class>/")
    p.add_argument("--trigger", default="", help="trigger word, first in every caption (e.g. ohwx)")
    p.add_argument("--class-token", default="", help="class word (e.g. woman)")
    p.add_argument("--repeats", type=_count, default=10)
    p.add_argument("--caption-template", default="{caption}",
                   help="after the trigger word; fields {trigger} {class} {caption} {name} (default '{caption}': "
                        "the caption file found next to the source, if any)")
    p.add_argument("--caption-ext", default=".txt")
    p.add_argument("--no-carry-captions", action="store_true", help="ignore caption files next to the sources")
    p.add_argument("--resize", type=_count, help="longest side (or square side when cropping); never upscales")
    p.add_argument("--crop", choices=CROPS, default="none", help="square crop: centre or around the largest face")
    p.add_argument("--convert", choices=CONVERSIONS, default="png",
                   help="format for sources other than jpg/png, which not every trainer reads (default png)")
    p.add_argument("--jpeg-quality", type=_count, default=95)
    p.add_argument("--keep-orientation", action="store_true",
                   help="copy EXIF-rotated JPEGs as they are (kohya ignores the rotation)")
    p.add_argument("--link", action="store_true", help="hard links instead of copies (same file system)")
    p.add_argument("--train-resolution", type=_count, default=1024, help="resolution in dataset.toml")
    p.add_argument("--relative-paths", action="store_true", help="dataset.toml image_dir relative to OUT")
    p.add_argument("--zip", action="store_true", help="also write OUT.zip")


def _open(args: argparse.Namespace, write: bool) -> duckdb.DuckDBPyConnection:
    db = args.db or (default_db(args.root) if args.root else None)
    if db is None:
        raise ExportError("say which database: --db PATH (or --root ROOT for the one `score ROOT` made)")
    if not Path(db).exists():
        raise DatabaseError(f"no database at {db}")
    return connect(db, read_only=not write)


def _selection(con: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> Selection:
    return select(con, args.strategy, args.k, min_ensemble=args.min_ensemble, bands=args.bands,
                  diversity=args.diversity, min_identity=args.min_identity, hamming=args.hamming,
                  cosine=None if args.no_clip else args.cosine)


def cmd_dedupe(args: argparse.Namespace) -> int:
    con = _open(args, write=args.keep_best)
    try:
        found = clusters(con, args.hamming, None if args.no_clip else args.cosine)
        report = keep_best_of_each_cluster(con, found, session="dedupe:cli") if args.keep_best else None
    finally:
        con.close()
    if args.format == "json":
        print(json.dumps([{"best": c.best.path, "members": [
            {"path": m.path, "ensemble": m.ensemble} for m in c.members]} for c in found], indent=1))
    else:
        for n, c in enumerate(found, start=1):
            print(f"cluster {n}: {len(c.members)} images, best {c.best.path}")
            for m in c.members[1:]:
                print(f"  {m.path}")
    dupes = sum(len(c.members) - 1 for c in found)
    print(f"{len(found)} clusters, {dupes} near-duplicates of a better image", file=sys.stderr)
    if report is not None:
        print(f"rejected {len(report.rejected)}; {report.left_alone} decided by you left alone", file=sys.stderr)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    con = _open(args, write=args.propose)
    try:
        result = _selection(con, args)
        paths = dict(con.execute("SELECT id, path FROM images").fetchall())
        report = propose(con, result) if args.propose else None
    finally:
        con.close()
    rows = [{"path": paths[i], "image_id": i, "reason": result.reasons.get(i, "")} for i in result.image_ids]
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=["path", "image_id", "reason"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(result.summary, file=sys.stderr)
    if report is not None:
        print(f"proposed {len(report.accepted)} as accepted, {len(report.retracted)} earlier proposals "
              f"withdrawn, {report.left_alone} decided by you left alone", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    options = ExportOptions(
        layout=args.layout, trigger=args.trigger, class_token=args.class_token, repeats=args.repeats,
        caption_template=args.caption_template, caption_extension=args.caption_ext,
        carry_captions=not args.no_carry_captions, resize=args.resize, crop=args.crop, convert=args.convert,
        jpeg_quality=args.jpeg_quality, bake_orientation=not args.keep_orientation, link=args.link,
        train_resolution=args.train_resolution, relative_paths=args.relative_paths)
    con = _open(args, write=False)
    try:
        chosen = None if args.strategy == "accepted" else _selection(con, args)
        if chosen is not None:
            print(chosen.summary, file=sys.stderr)
        report = export(con, args.out, options, None if chosen is None else chosen.image_ids, root=args.root)
    finally:
        con.close()
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(report.summary())
    if args.zip:
        print(f"zip: {export_zip(report.out)}")
    return 0


COMMANDS = {"dedupe": cmd_dedupe, "select": cmd_select, "export": cmd_export}

"""Command line: `python -m curator score|scorers|rank ...` (the contract in README.md)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from curator import __version__, cli_export
from curator.job import Progress, ScoringJob, ScoringStopped, create_scorers
from curator.paths import default_db
from curator.scan import ScanError
from scorers.base import UnknownScorer, known_options, registered
from scorers.weights import prefetch, weights_table
from storage.db import DatabaseError, connect
from storage.ranking import ranked


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of usage + error
        raise CliError(f"{message} (see: python -m curator {self.prog.split()[-1]} --help)"
                       if " " in self.prog else f"{message} (see: python -m curator --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _option(text: str) -> tuple[str, str]:
    """'brisque_model=libsvm' -> ('brisque_model', 'libsvm'), for options some scorer declares."""
    key, sep, value = (t.strip() for t in text.partition("="))
    known = known_options()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key not in known:
        raise argparse.ArgumentTypeError(f"unknown scorer option {key!r}; known: {', '.join(sorted(known))}")
    return key, value


def parse_weights(text: str) -> dict[str, float]:
    """'sharpness=2,noise_sigma=0' -> {'sharpness': 2.0, 'noise_sigma': 0.0}."""
    weights = {}
    for part in _csv_list(text):
        name, sep, value = part.partition("=")
        if not sep:
            raise CliError(f"--weights expects metric=weight pairs, got {part!r}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise CliError(f"--weights: {value!r} is not a number (in {part!r})") from None
    return weights


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="curator", description="Score, rank, review and export image datasets.")
    parser.add_argument("--version", action="version", version=f"curator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("score", help="scan a folder and score every image (incremental, resumable)")
    p.add_argument("root", type=Path, help="dataset folder (scanned recursively)")
    p.add_argument("--db", type=Path, help="DuckDB file (default: one per folder in the Curator data dir)")
    p.add_argument("--scorers", type=_csv_list, help="comma-separated scorer names (default: all available)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--workers", type=_positive_int, default=2, help="decode threads")
    p.add_argument("--reference", type=Path, help="folder of reference photos for the identity scorer")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a scorer option (repeatable); `python -m curator scorers` lists them")
    p.add_argument("--cache-dir", type=Path, help="weights cache (default: CURATOR_CACHE or the HF cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("scorers", help="list scorers, their availability and metrics")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("rank", help="print images best first under the given weights")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--weights", type=parse_weights, default={}, help="metric=weight,... (others keep defaults)")
    p.add_argument("--limit", type=_positive_int)
    p.add_argument("--format", choices=("csv", "json"), default="csv")

    p = sub.add_parser("weights", help="list the weight files each scorer needs; --prefetch downloads them")
    p.add_argument("--prefetch", action="store_true", help="download every missing file (e.g. in a Docker build)")
    p.add_argument("--cache-dir", type=Path, help="weights cache (default: CURATOR_CACHE or the HF cache)")
    p.add_argument("--json", action="store_true")
    cli_export.add_parsers(sub)
    return parser


def cmd_score(args: argparse.Namespace) -> int:
    if args.reference is not None and not args.reference.is_dir():
        raise CliError(f"--reference: not a folder: {args.reference}")
    if not args.root.is_dir():
        raise CliError(f"dataset folder not found: {args.root}")
    options = dict(args.option)
    if args.reference:
        options["reference_dir"] = str(args.reference)
    scorers = create_scorers(args.scorers, args.device, args.cache_dir, options)
    db_path = args.db or default_db(args.root)
    con = connect(db_path)
    bar = None if args.quiet else _ProgressBar()
    job = ScoringJob(con, args.root, scorers, batch_size=args.batch_size, workers=args.workers)
    try:
        progress = job.run(bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    for name, reason in progress.unavailable.items():
        print(f"scorer {name}: unavailable: {reason}", file=sys.stderr)
    con.execute("CHECKPOINT")
    con.close()
    if len(progress.unavailable) == len(scorers):
        print("error: no selected scorer is available; nothing was scored", file=sys.stderr)
        return 1
    print(f"{progress.done} images processed ({progress.errors} broken, {progress.unchanged} unchanged) "
          f"in {(progress.finished or 0) - (progress.started or 0):.1f}s; database: {db_path}")
    return 0


class _ProgressBar:
    """tqdm bar fed from job progress snapshots."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar = None

    def update(self, p: Progress) -> None:
        if p.state == "scoring" and self._bar is None:
            self._bar = self._tqdm(total=p.total, unit="img", desc="scoring", file=sys.stderr)
        if self._bar is not None:
            self._bar.n = p.done
            self._bar.set_postfix(errors=p.errors, refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def scorer_table() -> list[dict]:
    """Each registered scorer with version, availability and declared metrics (`scorers --json`)."""
    out = []
    for cls in registered().values():
        status = cls().availability()
        out.append({
            "name": cls.name, "version": cls.version, "available": status.ok,
            "reason": None if status.ok else status.reason, "description": cls.description,
            "metrics": [m.as_dict() for m in cls.metrics], "options": dict(cls.option_help),
        })
    return out


def cmd_scorers(args: argparse.Namespace) -> int:
    table = scorer_table()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for s in table:
        state = "available" if s["available"] else f"unavailable: {s['reason']}"
        print(f"{s['name']} (v{s['version']}): {state}")
        for m in s["metrics"]:
            rng = f"[{_fmt(m['min'])}, {_fmt(m['max'])}]"
            direction = "higher is better" if m["higher_is_better"] else "lower is better"
            print(f"  {m['name']:<28} {rng:<16} {direction:<17} weight {m['default_weight']:g}")
        for key, text in s["options"].items():
            print(f"  option {key}=...: {text}")
    return 0


def _fmt(v: float | None) -> str:
    return "open" if v is None else f"{v:g}"


def cmd_rank(args: argparse.Namespace) -> int:
    con = connect(args.db, read_only=True) if args.db.exists() else None
    if con is None:
        raise CliError(f"no database at {args.db}")
    try:
        table = ranked(con, args.weights, limit=args.limit)
    except ValueError as e:
        raise CliError(str(e)) from None
    finally:
        con.close()
    columns = ["path", "ensemble"] + [c for c in table.columns
                                      if c not in ("image_id", "path", "ensemble", "status", "error",
                                                   "width", "height")]
    table = table[columns]
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    else:
        print(json.dumps(json.loads(table.to_json(orient="records")), indent=1))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """List (and with --prefetch, download) every scorer's weight files; non-zero if any download fails."""
    failures = prefetch(registered(), args.cache_dir) if args.prefetch else {}
    rows = weights_table(registered(), args.cache_dir)
    if args.json:
        print(json.dumps({"files": rows, "failed": {k: v for k, v in failures.items() if v}}, indent=2))
    else:
        for scorer in dict.fromkeys(r["scorer"] for r in rows):
            print(scorer)
            for r in (r for r in rows if r["scorer"] == scorer):
                state = "present" if r["present"] else "missing" + (" (optional)" if r["optional"] else "")
                size = "?" if r["size"] is None else f"{r['size'] / 2**20:.1f} MiB"
                print(f"  {r['name']:<36} {size:>10}  {state:<18} {r['path']}")
    for error in filter(None, failures.values()):
        print(f"curator: {error}", file=sys.stderr)
    return 1 if any(failures.values()) else 0


COMMANDS = {"score": cmd_score, "scorers": cmd_scorers, "rank": cmd_rank, "weights": cmd_weights}
COMMANDS.update(cli_export.COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (CliError, UnknownScorer, ScanError, ScoringStopped, DatabaseError, *cli_export.ERRORS) as e:
        print(f"curator: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("curator: interrupted; finished batches are saved, run again to resume", file=sys.stderr)
        return 130

"""Curator's review dashboard: `python app.py [FOLDER]` (Hugging Face Spaces runs this file).

With no folder it opens the built-in demo dataset. Either way scoring starts in the background at once
and the gallery fills in as images are scored. Starts fast: no model library is imported until a
scorer loads its weights in the background job.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    default_port = os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or "7860"
    p = argparse.ArgumentParser(prog="app.py", description="Curator review dashboard")
    p.add_argument("folder", nargs="?", type=Path, help="dataset folder (default: the built-in demo dataset)")
    p.add_argument("--db", type=Path, help="DuckDB file (default: one per folder in the Curator data dir)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=_port, default=_port(default_port),
                   help="default: $PORT, $GRADIO_SERVER_PORT or 7860")
    p.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    p.add_argument("--scorers", type=lambda t: [s.strip() for s in t.split(",") if s.strip()],
                   help="comma-separated scorer names (default: every registered scorer)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="folder of reference photos of the character, for the identity score (kept with the dataset)")
    p.add_argument("--auth", metavar="USER:PASS[,USER:PASS]",
                   help="require a login (default: $CURATOR_AUTH; none when unset); each user sees only their own "
                        "uploads and the dataset the app was started on")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from curator.access import auth_from_env, folders_allowed, parse_auth
    from curator.session import ScoringOptions, Workspace
    from scorers.base import UnknownScorer, get_scorer_class

    try:
        for name in args.scorers or []:
            get_scorer_class(name)
        auth = parse_auth(args.auth) if args.auth else auth_from_env()
        folders_allowed()   # a malformed CURATOR_ALLOW_FOLDERS stops the start, not the first click
    except (UnknownScorer, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.folder is None:
        from curator.demo import demo_root

        folder = demo_root()
    else:
        folder = args.folder
    if not folder.is_dir():
        print(f"error: dataset folder not found: {folder}", file=sys.stderr)
        return 2
    from curator.ui import build_app, launch_kwargs

    workspace = Workspace(ScoringOptions(scorers=args.scorers, device=args.device))
    try:   # the operator's choice: every user sees it
        initial = workspace.open(folder, db=args.db, public=True, reference=args.reference)
    except ValueError as e:   # a --reference folder that is missing or has no images
        workspace.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = build_app(workspace, initial)
    app.queue(default_concurrency_limit=4)
    try:
        app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                   **launch_kwargs(workspace))
    finally:
        workspace.close()   # stop scoring between batches and close the databases cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main())

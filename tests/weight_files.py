"""Weight files for tests: a local HTTP server that counts requests, and specs for files tests make.

Tests never reach the internet: downloads go to 127.0.0.1 or file:// URLs through the same
`scorers.weights.fetch` path users hit with real URLs.
"""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from scorers.weights import WeightSpec, sha256_file

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


class FileServer:
    """Serves `files` (URL path -> bytes) on 127.0.0.1 and counts GET requests per path. Paths in
    `cut_off` announce their full length but the connection closes after half of the bytes."""

    def __init__(self, files: dict[str, bytes], cut_off: frozenset[str] = frozenset()) -> None:
        self.files = files
        self.cut_off = cut_off
        self.gets: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.gets[self.path] += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if self.path in server.cut_off else body)
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_port}"

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def serving(files: dict[str, bytes], cut_off: frozenset[str] = frozenset()) -> Iterator[FileServer]:
    server = FileServer(files, cut_off)
    thread = threading.Thread(target=server._httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._httpd.shutdown()
        server._httpd.server_close()


def file_spec(path: Path, name: str, **kwargs: object) -> WeightSpec:
    """A spec for a file a test made, fetched through a file:// URL, pinned to its real sha256."""
    return WeightSpec(name=name, url=path.resolve().as_uri(), sha256=sha256_file(path), size=path.stat().st_size,
                      **kwargs)

"""What the web server may hand out: the thumbnails and exports of the datasets a user may see.

Gradio serves any file under its static paths (our thumbnail and export folders, registered as
datasets open), its upload and cache folders and `allowed_paths`, through `/gradio_api/file=<path>`
and older spellings of that route, and fetches `http(s)` URLs given there on the server's behalf.
`FileGuard` stands in front of those routes and answers 403 unless the path, with symlinks
resolved, is a file inside a folder the workspace serves to the user asking
(`Workspace.served_folders`): another user's thumbnails, uploaded zips, source images, the
databases, URLs and everything else on disk are refused, however the path is spelt.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# The dashboard's event handlers are no public API. Left out of Gradio's API description, they are not
# described (defaults included) on the login page, which Gradio serves to visitors not logged in.
HIDDEN_API = {"api_visibility": "undocumented"}
FILE_ROUTE = re.compile(r"/file[=/](?P<path>.*)$", re.DOTALL)   # the first one, as the routes match


class FileGuard:
    """ASGI middleware: only files inside `folders(user)` pass the file routes."""

    def __init__(self, app: ASGIApp, folders: Callable[[str | None], list[Path]]) -> None:
        self.app = app
        self.folders = folders

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = FILE_ROUTE.search(scope.get("path", ""))
            if match and not self.allowed(match["path"], request_user(scope)):
                await PlainTextResponse("File not allowed.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allowed(self, path: str, user: str | None) -> bool:
        """Whether `path` (as the route received it: relative paths are taken from the working
        directory, like Gradio does) is a file inside one of the user's served folders."""
        try:
            target = Path(os.path.realpath(os.path.abspath(path)))
            if not target.is_file():
                return False
            return any(target.is_relative_to(os.path.realpath(folder)) for folder in self.folders(user))
        except (OSError, ValueError):   # e.g. a NUL byte in the path
            return False


def file_guard(folders: Callable[[str | None], list[Path]]) -> Middleware:
    """The guard, for `launch(app_kwargs={"middleware": [...]})`: Gradio builds its app with it."""
    return Middleware(FileGuard, folders=folders)


def request_user(scope: Scope) -> str | None:
    """The logged-in user of a request, found as Gradio's own `get_current_user` finds it (its login
    cookie looked up in the app's token table); None without login."""
    app = scope.get("app")
    cookie_id = getattr(app, "cookie_id", None)
    cookies = Request(scope).cookies
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return getattr(app, "tokens", {}).get(token) if token else None

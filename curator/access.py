"""Who may use the dashboard and what each user may open.

Login is optional (`CURATOR_AUTH=user:pass[,user2:pass2]` or `app.py --auth`). With it on, each user's
uploads go to a folder of their own and a user sees only the datasets they opened, plus the one the
app was started on (the demo). Opening a folder by its path on the server is for local use: it is off
on a Hugging Face Space unless `CURATOR_ALLOW_FOLDERS=1`, and `CURATOR_ALLOW_FOLDERS=0` turns it off
anywhere; users then open datasets by uploading zips.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from curator.paths import data_dir, slug


class AuthError(ValueError):
    """The login accounts given are malformed; the message says how."""


def parse_auth(text: str) -> list[tuple[str, str]]:
    """`user:pass[,user2:pass2]` as (user, password) pairs. A password may contain ':' (the first one
    splits); names must be unique and neither part empty, so a typo cannot leave the app open."""
    accounts: dict[str, str] = {}
    for entry in text.split(","):
        entry = entry.strip()
        user, sep, password = entry.partition(":")
        user = user.strip()
        if not sep or not user or not password:
            raise AuthError(f"expected user:password, got {entry!r}" if entry else "empty account in the list")
        if user in accounts:
            raise AuthError(f"user {user!r} is listed twice")
        accounts[user] = password
    return list(accounts.items())


def auth_from_env() -> list[tuple[str, str]] | None:
    """The accounts `CURATOR_AUTH` lists, or None when it is unset or empty (no login)."""
    text = os.environ.get("CURATOR_AUTH", "").strip()
    return parse_auth(text) if text else None


def folders_allowed() -> bool:
    """Whether users may open a folder by typing its path on the server."""
    flag = os.environ.get("CURATOR_ALLOW_FOLDERS", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag:
        raise ValueError(f"CURATOR_ALLOW_FOLDERS must be 0 or 1, not {flag!r}")
    return not os.environ.get("SPACE_ID")


def user_dir(user: str | None) -> Path:
    """A logged-in user's own folder under the data dir (None: the single user of an app without
    login, whose files stay where they always were). The name is readable but made safe, with a hash
    so that two names that clean up alike ('a/b', 'a-b') never share a folder."""
    if user is None:
        return data_dir()
    return data_dir() / "users" / f"{slug(user, 'user')}-{hashlib.sha256(user.encode()).hexdigest()[:8]}"


def uploads_dir(user: str | None) -> Path:
    """Where the zips `user` uploads are extracted."""
    return user_dir(user) / "uploads"


class AccessDenied(ValueError):
    """A user asked for something this app does not let them have; the message says why."""


def check_folder(folder: Path, user: str | None) -> None:
    """Raise AccessDenied unless `user` may open `folder` by its path: folders must be allowed here,
    and no one opens another user's folder of uploads that way."""
    if not folders_allowed():
        raise AccessDenied("Opening a folder by its path is turned off on this server: upload a zip of images.")
    root = Path(folder).expanduser().resolve()
    if root.is_relative_to((data_dir() / "users").resolve()) and (
            user is None or not root.is_relative_to(user_dir(user).resolve())):
        raise AccessDenied("That folder holds another user's uploads.")


def user_of(request: object) -> str | None:
    """The logged-in user of a dashboard event (its `gr.Request`); None without login."""
    return getattr(request, "username", None)

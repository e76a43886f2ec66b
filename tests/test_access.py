"""Who may use the dashboard and what each user may open: login accounts, the folder switch,
per-user folders and datasets."""
from pathlib import Path

import pytest

from curator.access import (
    AccessDenied,
    AuthError,
    auth_from_env,
    check_folder,
    folders_allowed,
    parse_auth,
    uploads_dir,
    user_dir,
)
from curator.paths import data_dir
from curator.session import ScoringOptions, Workspace
from tests.images import photo, save


def test_parse_auth() -> None:
    assert parse_auth("alice:s3cret") == [("alice", "s3cret")]
    assert parse_auth(" alice:a:b:c , bob:pw ") == [("alice", "a:b:c"), ("bob", "pw")]   # ':' in passwords
    for bad, why in [("alice", "user:password"), ("alice:", "user:password"), (":pw", "user:password"),
                     ("alice:pw,", "empty account"), ("alice:pw,alice:other", "listed twice")]:
        with pytest.raises(AuthError, match=why):
            parse_auth(bad)


def test_auth_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURATOR_AUTH", raising=False)
    assert auth_from_env() is None
    monkeypatch.setenv("CURATOR_AUTH", "  ")
    assert auth_from_env() is None
    monkeypatch.setenv("CURATOR_AUTH", "a:1,b:2")
    assert auth_from_env() == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize("space,flag,allowed", [
    (None, None, True), ("me/curator", None, False), (None, "0", False), ("me/curator", "1", True),
    (None, "off", False), (None, "yes", True),
])
def test_folders_allowed(monkeypatch: pytest.MonkeyPatch, space: str | None, flag: str | None, allowed: bool) -> None:
    for name, value in (("SPACE_ID", space), ("CURATOR_ALLOW_FOLDERS", flag)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert folders_allowed() is allowed


def test_folders_allowed_refuses_a_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATOR_ALLOW_FOLDERS", "maybe")
    with pytest.raises(ValueError, match="0 or 1"):
        folders_allowed()


def test_user_folders_are_separate_and_inside_the_data_dir() -> None:
    names = ["alice", "a/b", "a-b", "../../etc", "", "Ünïcode user"]
    folders = [user_dir(n) for n in names]
    assert len(set(folders)) == len(names)
    assert all(f.parent == data_dir() / "users" and ".." not in f.name for f in folders)
    assert uploads_dir(None) == data_dir() / "uploads"     # no login: where uploads always were
    assert uploads_dir("alice") == user_dir("alice") / "uploads"


def test_check_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("CURATOR_ALLOW_FOLDERS", raising=False)
    check_folder(tmp_path, "alice")
    check_folder(uploads_dir("alice") / "shoot", "alice")
    for user in ("bob", None):
        with pytest.raises(AccessDenied, match="another user"):
            check_folder(uploads_dir("alice") / "shoot", user)
    with pytest.raises(AccessDenied, match="another user"):
        check_folder(user_dir("bob") / ".." / user_dir("alice").name, "bob")      # spelt with '..'
    monkeypatch.setenv("CURATOR_ALLOW_FOLDERS", "0")
    with pytest.raises(AccessDenied, match="turned off"):
        check_folder(tmp_path, "alice")


def test_each_user_gets_only_their_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("CURATOR_ALLOW_FOLDERS", raising=False)
    for name in ("demo", "hers", "his"):
        save(photo(1, (64, 48)), tmp_path / name / "a.jpg")
    ws = Workspace(ScoringOptions(scorers=["sharpness"], device="cpu"))
    demo = ws.open(tmp_path / "demo", score=False, public=True)
    hers = ws.open_folder(tmp_path / "hers", "alice")
    his = ws.open_folder(tmp_path / "his", "bob")
    assert ws.get(demo.key, "alice") is demo and ws.get(demo.key, "bob") is demo and ws.get(demo.key) is demo
    assert ws.get(hers.key, "alice") is hers and ws.get(his.key, "bob") is his
    assert ws.get(hers.key, "bob") is None and ws.get(his.key, "alice") is None and ws.get(hers.key) is None
    assert ws.get("/no/such/dataset", "alice") is None
    served = ws.served_folders("bob")
    assert his.thumbs.folder in served and his.exports in served and demo.thumbs.folder in served
    assert hers.thumbs.folder not in served and hers.exports not in served
    assert not any(f.is_relative_to(tmp_path) for f in served)    # never a dataset's own images
    assert ws.open_folder(tmp_path / "hers", "bob") is hers         # a folder both may open by path...
    assert ws.get(hers.key, "bob") is hers and ws.get(hers.key, "alice") is hers   # ...both may then see
    ws.close()

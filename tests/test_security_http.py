"""The real app over real HTTP, attacked: `python app.py` with login on (two users), folders off and
small upload limits, as on a shared Space.

Without login nothing but the login page answers. Gradio's file routes are asked for files that must
not leave the server (system files, a secret next to the data, source images, the database, Gradio's
upload folder, another user's thumbnails), spelt every way a path can be spelt (absolute, `..` raw,
URL-encoded and double-encoded, backslashes, NUL), through symlinks planted in the thumbnail folder
and in the dataset, and as URLs the server would fetch; only the user's own thumbnails come back.
Malicious zips go through the app's real upload path (Gradio's upload route, then the upload event):
zip-slip, absolute and drive-letter names, symlink entries, a zip bomb, non-images, too many files,
too many bytes, not a zip. One user's tab cannot open another's dataset by its key.

Every attempt is tallied per category; the summary is printed and written to
test-artifacts/security-http.txt.
"""
from __future__ import annotations

import http.client
import io
import secrets
import sys
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from curator.scan import is_image_name
from tests.images import photo, save
from tests.live_app import REPO, app_env, free_port, start_app, stop_app
from tests.test_uploads import make_zip

gradio_client = pytest.importorskip("gradio_client")

ALICE, BOB = ("alice", "alice-pw-1"), ("bob", "bob:pw:2")
MAX_FILES, MAX_BYTES = 5, 2_000_000
SECRET = f"TOP-SECRET-{secrets.token_hex(8)}"
TOKEN = secrets.token_hex(4)             # in the names of files a zip tries to plant outside
PREFIXES = ("/gradio_api/file=", "/file=", "/gradio_api/file/")


class Tally:
    """Attempts and outcomes per category, for the summary."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def add(self, category: str, attempt: str, outcome: str) -> None:
        self.rows[category].append((attempt, outcome))

    def summary(self) -> str:
        lines = ["category: attempts -> outcomes"]
        for category, rows in self.rows.items():
            outcomes: dict[str, int] = defaultdict(int)
            for _, outcome in rows:
                outcomes[outcome] += 1
            lines.append(f"{category}: {len(rows)} -> " + ", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items())))
        lines.append("")
        lines += [f"[{c}] {a} -> {o}" for c, rows in self.rows.items() for a, o in rows]
        return "\n".join(lines)


class Server:
    def __init__(self, base: Path, port: int, initial: Path, secret: Path) -> None:
        self.base, self.port, self.initial, self.secret = base, port, initial, secret
        self.url = f"http://127.0.0.1:{port}/"
        self.tally = Tally()
        self.cookies: dict[str, str] = {}

    # -- raw HTTP: paths go out exactly as written (no client-side normalising of `..`) -------------------
    def raw(self, method: str, path: str, cookie: str = "", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in {**({"Cookie": cookie} if cookie else {}), **(headers or {})}.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def login(self, user: str, password: str) -> str:
        """The Cookie header of a logged-in session."""
        if user not in self.cookies:
            form = urllib.parse.urlencode({"username": user, "password": password}).encode()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            jar = [h.split(";", 1)[0] for k, h in resp.getheaders() if k.lower() == "set-cookie"]
            conn.close()
            self.cookies[user] = "; ".join(jar)
        return self.cookies[user]

    def client(self, account: tuple[str, str]):
        return gradio_client.Client(self.url, auth=account, verbose=False, download_files=False)


def call(client, name: str, overrides: dict[str, object] | None = None) -> dict[int, object]:
    """Run the dashboard event `name` as the page would: every input at its default value unless
    `overrides` (by elem_id, label or "id:<component id>") says otherwise; the outputs by component id."""
    comps = {c["id"]: c for c in client.config["components"]}
    dep = next(d for d in client.config["dependencies"] if d.get("api_name") == name)
    endpoint = client.endpoints[dep["id"]]
    args = []
    for i, kind in zip(dep["inputs"], endpoint.input_component_types):
        if kind.skip:
            continue   # state: the server keeps it
        props = comps[i]["props"]
        keys = {props.get("elem_id"), props.get("label"), f"id:{i}"}
        hit = next((k for k in (overrides or {}) if k in keys), None)
        args.append(overrides[hit] if hit else props.get("value"))
    result = client.predict(*args, api_name=f"/{name}")
    outputs = [i for i, kind in zip(dep["outputs"], endpoint.output_component_types) if not kind.skip]
    return dict(zip(outputs, result if isinstance(result, tuple) else (result,), strict=True))


def key_id(client) -> int:
    """The hidden textbox holding the key of the dataset a tab shows (the first input of on_tick)."""
    return next(d for d in client.config["dependencies"] if d.get("api_name") == "on_tick")["inputs"][0]


def html_with(outputs: dict[int, object], marker: str) -> str:
    return next(v for v in outputs.values() if isinstance(v, str) and marker in v)


def gallery_urls(outputs: dict[int, object]) -> list[str]:
    for value in outputs.values():
        if isinstance(value, dict) and isinstance(value.get("value"), list) and value["value"] and \
                isinstance(value["value"][0], dict) and "image" in value["value"][0]:
            return [item["image"]["url"] for item in value["value"]]
    return []


def wait_scored(client, key: str, timeout: float = 60) -> dict[int, object]:
    """The first page of dataset `key` once it is scored."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = call(client, "on_view", {f"id:{key_id(client)}": key})
        if "data-state='done'" in html_with(view, "cur-progress"):
            return view
        time.sleep(0.5)
    raise AssertionError(f"scoring {key} did not finish")


def jpeg(seed: int, size=(160, 120)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(seed, size)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(seed, (96, 72))).save(buf, "PNG")
    return buf.getvalue()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("security")
    secret = base / "private" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    shoot = base / "shoot"
    for i in range(3):
        save(photo(300 + i, (320, 240)), shoot / f"img{i}.jpg", quality=90)
    (shoot / "leak.jpg").symlink_to(secret)               # a symlink in a dataset, pointing outside it
    port = free_port()
    env = app_env(base, CURATOR_AUTH=f"{ALICE[0]}:{ALICE[1]},{BOB[0]}:{BOB[1]}", CURATOR_ALLOW_FOLDERS="0",
                  CURATOR_UPLOAD_MAX_FILES=str(MAX_FILES), CURATOR_UPLOAD_MAX_BYTES=str(MAX_BYTES))
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    log = REPO / "test-artifacts" / "security-app.log"
    log.write_text("")
    proc = start_app([sys.executable, "app.py", str(shoot), "--port", str(port), "--scorers", "sharpness"],
                     env, log, port)
    srv = Server(base, port, shoot, secret)
    yield srv
    stop_app(proc)
    summary = srv.tally.summary()
    (REPO / "test-artifacts" / "security-http.txt").write_text(summary + "\n")
    print("\n" + summary)
    text = log.read_text()   # the errors shown to users (gr.Error) are logged with their tracebacks
    assert text.count("Traceback") == text.count("gradio.exceptions.Error: "), text[-3000:]


# -- login ------------------------------------------------------------------------------------------------
def test_without_login_only_the_login_page_answers(server: Server) -> None:
    refused = [("GET", "/config"), ("GET", "/gradio_api/info"), ("GET", "/gradio_api/info?all_endpoints=True"),
               ("POST", "/gradio_api/upload"), ("POST", "/gradio_api/queue/join"),
               ("POST", "/gradio_api/run/on_load"), ("GET", "/gradio_api/queue/data?session_hash=x")]
    for method, path in refused:
        status, body = server.raw(method, path, body=b"{}" if method == "POST" else None,
                                  headers={"Content-Type": "application/json"} if method == "POST" else None)
        server.tally.add("no login", f"{method} {path}", str(status))
        assert status == 401, (method, path, status, body[:200])
    status, page = server.raw("GET", "/")
    server.tally.add("no login", "GET / (login page)", f"{status}, no app data" if str(server.initial) not in
                     page.decode(errors="replace") else f"{status}, LEAKS the dataset path")
    assert status == 200 and b"auth_required" in page
    assert str(server.initial).encode() not in page and b"named_endpoints\":{\"/" not in page
    status, _ = server.raw("POST", "/login", body=urllib.parse.urlencode({"username": ALICE[0], "password": "wrong"})
                           .encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    server.tally.add("no login", "POST /login with a wrong password", str(status))
    assert status >= 400
    # ...and with login the same requests work
    cookie = server.login(*ALICE)
    for path in ("/config", "/gradio_api/info"):
        status, body = server.raw("GET", path, cookie)
        server.tally.add("logged in (control)", f"GET {path}", str(status))
        assert status == 200, (path, status)
    assert b'"username":"alice"' in server.raw("GET", "/config", cookie)[1].replace(b" ", b"")


# -- per-user datasets ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uploaded(server: Server):
    """Alice uploads a zip and scores it; returns her dataset key and her thumbnails' URLs."""
    alice = server.client(ALICE)
    z = make_zip(server.base / "alice.zip", {f"a{i}.jpg": jpeg(400 + i) for i in range(3)})
    out = call(alice, "on_upload", {"cur-upload": gradio_client.handle_file(str(z))})
    key = out[key_id(alice)]
    urls = gallery_urls(wait_scored(alice, key))
    assert len(urls) == 3
    return key, urls


def test_each_user_sees_only_their_own_uploads(server: Server, uploaded) -> None:
    key, urls = uploaded
    users = server.base / "data" / "users"
    assert Path(key).is_relative_to(users) and Path(key).parent.name == "uploads"
    assert Path(key).parent.parent.name.startswith("alice-")
    bob = server.client(BOB)
    kid = key_id(bob)
    # Bob's tab sends Alice's key: every handler answers with the dataset the app started on.
    tab = call(bob, "on_tab", {f"id:{kid}": key})
    server.tally.add("other user's dataset key", "on_tab (reload with her key)",
                     "refused" if key not in map(str, tab.values()) else "OPENED")
    assert key not in map(str, tab.values()) and str(server.initial) in map(str, tab.values())
    for event in ("on_load", "on_view", "on_page"):
        out = call(bob, event, {f"id:{kid}": key})
        title = html_with(out, "cur-title")
        server.tally.add("other user's dataset key", event, "refused" if server.initial.name in title else "OPENED")
        assert server.initial.name in title and Path(key).name not in title
    # Bob cannot reach it as a folder either (folders are off on a shared server)...
    with pytest.raises(Exception, match="turned off"):
        call(bob, "on_open_folder", {"Open a folder on this machine": key})
    server.tally.add("other user's dataset key", "on_open_folder with her path", "refused")
    # ...and the folder box is not even shown.
    box = next(c for c in bob.config["components"] if c["props"].get("label") == "Open a folder on this machine")
    assert box["props"]["visible"] is False
    # The same zip uploaded by Bob becomes his own copy.
    z = server.base / "alice.zip"
    mine = call(bob, "on_upload", {"cur-upload": gradio_client.handle_file(str(z))})[kid]
    assert mine != key and Path(mine).parent.parent.name.startswith("bob-")
    server.tally.add("other user's dataset key", "same zip uploaded by the other user", "separate copy")


# -- file routes ------------------------------------------------------------------------------------------
def _thumbs_folder(url: str) -> Path:
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path).split("/file=", 1)[1])
    return next(p for p in path.parents if p.name == "thumbs")


def test_file_routes_serve_only_the_users_thumbnails(server: Server, uploaded) -> None:
    key, urls = uploaded
    alice, bob = server.login(*ALICE), server.login(*BOB)
    mine = urllib.parse.urlparse(urls[0]).path
    # Controls: what the app hands out is served, to its owner.
    status, body = server.raw("GET", mine, alice)
    server.tally.add("control: own thumbnail", f"GET {mine}", str(status))
    assert status == 200 and body[:2] == b"\xff\xd8"
    initial_thumb = gallery_urls(call(server.client(BOB), "on_load"))[0]
    status, body = server.raw("GET", urllib.parse.urlparse(initial_thumb).path, bob)
    server.tally.add("control: own thumbnail", "GET the start dataset's thumbnail as the other user", str(status))
    assert status == 200 and body[:2] == b"\xff\xd8"

    thumbs = _thumbs_folder(urls[0])
    start_thumbs = _thumbs_folder(initial_thumb)
    db = thumbs.parent / "curator.duckdb"
    source = Path(key) / "a0.jpg"
    uploaded_zips = sorted((server.base / "gradio-tmp").rglob("*.zip"))
    assert source.is_file() and db.is_file() and uploaded_zips
    # Symlinks planted where files are served from, pointing at what must not be served.
    (thumbs / "zz").mkdir(exist_ok=True)
    planted = {
        "symlink in thumbnails -> secret": (thumbs / "zz" / "leak-256.jpg", server.secret),
        "symlink in thumbnails -> source image": (thumbs / "zz" / "src-256.jpg", source),
        "symlinked folder in thumbnails -> /etc": (thumbs / "zz" / "etc", Path("/etc")),
        "symlink in the start dataset's thumbnails -> secret": (start_thumbs / "leak-256.jpg", server.secret),
    }
    for link, target in planted.values():
        link.symlink_to(target)

    def attempt(category: str, what: str, path: str, cookie: str = alice, forbidden: bytes = SECRET.encode(),
                method: str = "GET") -> None:
        status, body = server.raw(method, path, cookie)
        leaked = forbidden in body or b"root:x:0:0" in body
        server.tally.add(category, f"{what}: {method} {path[:110]}", f"{status}{' LEAK' if leaked else ''}")
        assert status in (401, 403, 404) and not leaked, (category, path, status, body[:200])

    absolute = {"/etc/passwd": Path("/etc/passwd"), "the secret": server.secret, "a source image": source,
                "the start dataset's source image": server.initial / "img0.jpg", "the database": db,
                "the uploaded zip in Gradio's upload folder": uploaded_zips[0],
                "the symlink in the dataset": server.initial / "leak.jpg"}
    for what, path in absolute.items():
        forbidden = path.read_bytes()[:64] if path.is_file() else SECRET.encode()
        for prefix in PREFIXES:
            attempt("absolute paths outside the served folders", what, prefix + urllib.parse.quote(str(path)),
                    forbidden=forbidden)
        attempt("absolute paths outside the served folders", what, PREFIXES[0] + str(path), method="HEAD")

    t = str(thumbs)
    up = "/".join([".."] * 12)
    traversal = {
        "raw ..": f"{t}/../curator.duckdb",
        "raw .. to /etc/passwd": f"{t}/{up}/etc/passwd",
        "raw .. to the secret": f"{t}/{up}{server.secret}",
        "encoded %2e%2e%2f": f"{t}/%2e%2e%2fcurator.duckdb",
        "encoded ..%2f to /etc/passwd": f"{t}/" + "..%2f" * 12 + "etc%2fpasswd",
        "double-encoded %252e%252e%252f": f"{t}/" + "%252e%252e%252f" * 12 + "etc/passwd",
        "backslashes": f"{t}\\..\\..\\..\\..\\..\\..\\..\\..\\..\\etc\\passwd",
        "relative to the working directory": "../../../../../../../../etc/passwd",
        "NUL byte": "/etc/passwd%00.jpg",
        "NUL byte after a thumbnail": urllib.parse.urlparse(urls[0]).path.split("/file=", 1)[1] + "%00/../../..",
    }
    for what, path in traversal.items():
        for prefix in PREFIXES:
            attempt("'..' and encodings", what, prefix + path)

    for what, (link, _) in planted.items():
        for prefix in PREFIXES:
            attempt("symlinks", what, prefix + urllib.parse.quote(str(link)), forbidden=SECRET.encode())
    attempt("symlinks", "through the symlinked folder", PREFIXES[0] + str(thumbs / "zz" / "etc" / "passwd"))

    for url in (f"http://127.0.0.1:{server.port}/config", "http://169.254.169.254/latest/meta-data/",
                "https://huggingface.co/", "file:///etc/passwd"):
        attempt("URLs fetched by the server", url, PREFIXES[0] + url)

    for url in urls:
        attempt("another user's files", "her thumbnail as the other user", urllib.parse.urlparse(url).path, bob)
        attempt("another user's files", "her thumbnail without login", urllib.parse.urlparse(url).path, "")

    for path in ("/static/../../../../../../etc/passwd", "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
                 "/assets/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/svelte/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
                 "/gradio_api/upload?path=/etc/passwd"):
        status, body = server.raw("GET", path, alice)
        leaked = b"root:x:0:0" in body
        server.tally.add("Gradio's own asset routes", f"GET {path}", f"{status}{' LEAK' if leaked else ''}")
        assert not leaked and status != 200, (path, status)


# -- uploads ----------------------------------------------------------------------------------------------
def test_malicious_zips_extract_only_images_inside_the_users_uploads(server: Server, uploaded) -> None:
    alice = server.client(ALICE)
    kid = key_id(alice)
    uploads = Path(uploaded[0]).parent
    # Where a zip would plant files if its names were trusted: each must not exist, before or after.
    targets = [Path(f"/tmp/evil-{TOKEN}.png"), Path(f"/evil-{TOKEN}.png"), server.base / f"evil-{TOKEN}.png",
               uploads.parent / f"evil-{TOKEN}.png", uploads / f"evil-{TOKEN}.png"]
    assert not any(t.exists() for t in targets)
    zips = server.base / "zips"
    zips.mkdir()
    evil = make_zip(zips / "evil.zip", {
        "ok1.jpg": jpeg(500), "sub/ok2.png": png(501),
        f"../../evil-{TOKEN}.png": png(502), f"../../../../../../../../../tmp/evil-{TOKEN}.png": png(503),
        f"/tmp/evil-{TOKEN}.png": png(504), f"C:\\evil-{TOKEN}.png": png(505),
        f"sub/..\\..\\evil-{TOKEN}.png": png(506),
        "bomb.bmp": b"\0" * 20_000_000, "run.sh": b"#!/bin/sh\nrm -rf /\n", "page.html": b"<script>alert(1)</script>",
        "notes.txt": b"x", ".hidden.png": png(507), "__MACOSX/._ok1.jpg": b"fork",
    }, symlinks={"link.png": str(server.secret), "dir/link2.jpg": "/etc/passwd"})
    many = make_zip(zips / "many.zip", {f"m{i}.jpg": jpeg(600 + i, (48, 36)) for i in range(MAX_FILES + 1)})
    big = make_zip(zips / "big.zip", {"noise.png": secrets.token_bytes(MAX_BYTES + 500_000)}, stored=True)
    fake = zips / "fake.zip"
    fake.write_bytes(b"this is not a zip file")
    inner = make_zip(zips / "inner.zip", {"notes.txt": b"x", "nested.zip": evil.read_bytes()})
    before = files_under(server.base)

    def upload(category: str, zip_path: Path, expect: str) -> dict[int, object] | None:
        try:
            out = call(alice, "on_upload", {"cur-upload": gradio_client.handle_file(str(zip_path))})
        except Exception as e:   # a gr.Error, or the upload refused by the server
            server.tally.add("zip uploads", f"{category}", f"refused: {str(e)[:90]}")
            assert expect != "ok" and expect in str(e), (category, e)
            return None
        server.tally.add("zip uploads", f"{category}", "extracted: " + html_with(out, "extracted")[:90])
        assert expect == "ok", (category, out)
        return out

    out = upload("zip-slip, absolute, drive-letter, symlink, bomb, non-image and hidden entries", evil, "ok")
    key = out[kid]
    extracted = sorted(p.relative_to(key).as_posix() for p in Path(key).rglob("*") if p.is_file())
    assert extracted == [".curator-upload-complete", "ok1.jpg", "sub/ok2.png"], extracted
    assert not any(p.is_symlink() for p in Path(key).rglob("*"))
    info = html_with(out, "extracted")
    assert "2 images extracted" in info and "suspicious compression ratio" in info and "symbolic link" in info

    upload(f"{MAX_FILES + 1} images, limit {MAX_FILES}", many, f"over the limit of {MAX_FILES}")
    upload(f"zip of {big.stat().st_size:,} bytes, limit {MAX_BYTES:,} (refused by the client)", big,
           "maximum file size")
    # The server refuses it too, to a client that does not check first.
    boundary = secrets.token_hex(8)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.zip\"\r\n"
            f"Content-Type: application/zip\r\n\r\n").encode() + big.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, answer = server.raw("POST", "/gradio_api/upload", server.login(*ALICE), body=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    server.tally.add("zip uploads", "the same zip posted straight to /gradio_api/upload", f"{status} {answer[:60]!r}")
    assert status == 413, (status, answer[:200])
    upload("not a zip", fake, "not a readable zip")
    upload("only non-images (a nested zip, a text file)", inner, "no image files")

    # Nothing was written outside Alice's uploads folder but what the app keeps per dataset (database,
    # thumbnails) and what Gradio keeps of uploads; everything extracted is an image.
    new = files_under(server.base) - before
    allowed_roots = (uploads, server.base / "data" / "datasets", server.base / "gradio-tmp")
    assert all(any(p.is_relative_to(r) for r in allowed_roots) for p in new), sorted(
        p for p in new if not any(p.is_relative_to(r) for r in allowed_roots))
    in_uploads = {p for p in new if p.is_relative_to(uploads)}
    assert {p.name for p in in_uploads} == {"ok1.jpg", "ok2.png", ".curator-upload-complete"}
    assert not any(t.exists() for t in targets)
    assert not list(server.base.parent.rglob(f"*evil-{TOKEN}*"))
    assert not any(p.name.startswith(".extract-") for p in uploads.iterdir())
    assert not any(is_image_name(p.name) or p.name == "big.zip" for p in new
                   if p.is_relative_to(server.base / "gradio-tmp")), "Gradio kept an image or the refused zip"

"""`kill -9` in the middle of `python -m curator score`: the database opens, nothing is scored twice,
and a rerun finishes exactly the images that were not committed."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage.db import connect
from tests.images import photo, save
from tests.test_cli import REPO, fast_scorers

N = 400


def test_kill_minus_nine_then_resume(tmp_path: Path) -> None:
    root, db = tmp_path / "frames", tmp_path / "c.duckdb"
    for i in range(N):
        save(photo(i, (320, 240)), root / f"f{i:04d}.png")
    cmd = [sys.executable, "-m", "curator", "score", str(root), "--db", str(db),
           "--scorers", fast_scorers(), "--batch-size", "4"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    done = [0]

    def watch() -> None:  # follow the tqdm bar on stderr
        buf = b""
        while chunk := proc.stderr.read1(4096):
            buf = (buf + chunk)[-4096:]
            counts = re.findall(rb"(\d+)/%d" % N, buf)
            if counts:
                done[0] = int(counts[-1])

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.time() + 120
    while done[0] < 40 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make the dataset larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert done[0] < N

    con = connect(db)  # opens cleanly after the kill
    before = con.execute("SELECT image_id, scorer, scored_at FROM scorer_runs").fetchall()
    finished = con.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchall()[0][0]
    con.close()
    n_scorers = len(fast_scorers().split(","))
    assert len(before) == finished * n_scorers and 0 < finished < N

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{N - finished} images processed" in result.stdout

    con = connect(db)
    after = {(i, s): t for i, s, t in con.execute("SELECT image_id, scorer, scored_at FROM scorer_runs").fetchall()}
    status = con.execute("SELECT status, count(*) FROM images GROUP BY status").fetchall()
    con.close()
    assert status == [("ok", N)]
    assert len(after) == N * n_scorers                       # every image, every scorer, once
    assert all(after[(i, s)] == t for i, s, t in before)     # committed work was not redone

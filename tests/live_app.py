"""Starting `app.py` as a real server for a test, and stopping it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(command: list[str], env: dict[str, str], log: Path, port: int, timeout: float = 120
              ) -> subprocess.Popen:
    """Run `command` (an app.py command line) from the repository and wait until it answers HTTP on
    `port` (any status: a login page counts); raise with the log's tail if it exits or stays silent."""
    with open(log, "a") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return proc
        except urllib.error.HTTPError:
            return proc
        except OSError:
            time.sleep(0.5)
    stop_app(proc)
    raise RuntimeError(f"app did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen, wait: float = 20) -> bool:
    """Ctrl-C, as a person would (the app closes its databases), then kill if it hangs; False if it
    had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False
    return True


class LiveApp:
    """`python app.py ARGS --port P` in the repository, restartable on the same port, environment
    (`app_env(base)`) and log."""

    def __init__(self, args: list[str], base: Path, log: Path) -> None:
        self.args, self.log, self.port = args, log, free_port()
        self.env = app_env(base)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90) -> None:
        self.proc = start_app([sys.executable, "app.py", *self.args, "--port", str(self.port)], self.env,
                              self.log, self.port, timeout)

    def stop(self, wait: float = 20) -> bool:
        """Ctrl-C; False if the app had to be killed."""
        return stop_app(self.proc, wait) if self.proc is not None else True

    def kill(self) -> None:
        """`kill -9`, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def app_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment of an app under test: its data, home and Gradio's upload folder in `base`."""
    env = {**os.environ, "CURATOR_DATA_DIR": str(base / "data"), "HOME": str(base / "home"),
           "GRADIO_TEMP_DIR": str(base / "gradio-tmp"), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1", **extra}
    for name in ("CURATOR_AUTH", "CURATOR_ALLOW_FOLDERS", "SPACE_ID", "GRADIO_SERVER_NAME"):
        if name not in extra:
            env.pop(name, None)
    return env

"""A pre-imported Python that forks the PinGlass processes of the crash and scale-out tests.

Why: a fresh ``python -m bot`` spends 2.5 s of CPU (5-7 s on a busy 2-core machine) importing before
it does anything — aiogram alone builds ~300 pydantic models at import. The process tests start about
55 of them, and a per-test ``getrusage(RUSAGE_CHILDREN)`` probe put 291 of the suite's 775 CPU seconds
in those children. A fork of an interpreter that imported everything once starts in milliseconds and
is still a real OS process: its own PID, memory and event loop, killable with SIGKILL, running
``bot/__main__.py`` (or ``scheduler/__main__.py``) as ``__main__`` with its own environment.

The zygote is single-threaded and runs no event loop, so forking it is safe. One zygote serves the
whole test run: the first test process (xdist worker) that needs it starts it, the others find it by
its Unix socket, named after the run. One per worker imported the application six times, about 4 CPU
seconds each on a machine where the suite is CPU-bound. Each request is one connection carrying one
JSON object per line: ``spawn`` forks a child and answers its pid; ``poll`` answers a child's exit code
(as ``subprocess.Popen.returncode`` would: negative for a signal) or null. The zygote exits once the
process that owns the run (xdist's controller, or pytest itself without xdist) is gone.
Tests of the start-up itself (tests/unit/bot/test_settings.py, the one-line refusals in test_scale_out)
still start a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import json
import os
import random
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tests.support.collector import tune_collector

ROOT = Path(__file__).resolve().parents[2]
# What `python -m bot` and `python -m scheduler` import, at start or on their first request.
PRELOAD = (
    "bot.cli",
    "bot.app",
    "bot.startup",
    "aiosqlite",
    "asyncpg",
    "redis.asyncio",
    "alembic.command",
    "storage.migrate",
)


def serve(socket_path: str, owner_pid: int) -> None:
    """The zygote's loop (run as ``python -c``): answer requests until the run's owner goes away."""
    for module in PRELOAD:
        importlib.import_module(module)
    gc.freeze()  # the children's collections skip what the imports made (and leave its pages shared)
    tune_collector()  # as in the test processes (tests/support/collector.py)
    exit_codes: dict[int, int | None] = {}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".new")
    listener.listen(64)
    os.rename(socket_path + ".new", socket_path)  # the name appears only once it listens
    listener.settimeout(1.0)
    try:
        while _alive(owner_pid):
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                _reap(exit_codes)
                continue
            with connection, connection.makefile("rwb") as stream:
                line = stream.readline()
                if not line:
                    continue
                _reap(exit_codes)
                stream.write(json.dumps(_answer(json.loads(line), exit_codes)).encode() + b"\n")
                stream.flush()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(socket_path)


def _answer(request: dict[str, Any], exit_codes: dict[int, int | None]) -> dict[str, Any]:
    if request["op"] == "spawn":
        pid = os.fork()
        if pid == 0:
            _become(request)  # never returns
        exit_codes[pid] = None
        return {"pid": pid}
    return {"returncode": exit_codes.get(request["pid"])}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(exit_codes: dict[int, int | None]) -> None:
    while exit_codes:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        exit_codes[pid] = os.waitstatus_to_exitcode(status)


def _become(request: dict[str, Any]) -> None:
    """In the child: take the requested environment, directory and output, then run the module."""
    code = 1
    try:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        random.seed()  # every child would otherwise continue the zygote's sequence
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["module"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Zygote:
    """The test side: the run's one zygote, started by whichever test process needs it first."""

    def __init__(self, env: dict[str, str]) -> None:
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"solo-{os.getpid()}"
        # Under xdist the workers are children of the controller, which outlives every one of them.
        owner = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
        self._path = Path(tempfile.gettempdir()) / f"pinglass-zygote-{run[:16]}.sock"
        with open(f"{self._path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the rest wait here for its socket
            if self._path.exists() and not self._answers():
                self._path.unlink()  # left by a zygote that was killed (a reused pid's run name)
            if not self._path.exists():
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        f"from tests.support.zygote import serve; serve({str(self._path)!r}, {owner})",
                    ],
                    stdin=subprocess.DEVNULL,
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,  # not killed with the worker that happened to start it
                )
                deadline = time.monotonic() + 120
                while not self._path.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the process zygote did not start within 120 s")
                    time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            self._ask(op="poll", pid=0)
        except (OSError, RuntimeError):
            return False
        return True

    def _ask(self, **request: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(str(self._path))
            connection.sendall(json.dumps(request).encode() + b"\n")
            with connection.makefile("rb") as stream:
                line = stream.readline()
        if not line:
            raise RuntimeError("the process zygote closed the connection without an answer")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, module: str, env: dict[str, str], cwd: Path, log_path: Path) -> ForkedProcess:
        answer = self._ask(op="spawn", module=module, env=env, cwd=str(cwd), log=str(log_path))
        return ForkedProcess(self, int(answer["pid"]))

    def returncode(self, pid: int) -> int | None:
        code = self._ask(op="poll", pid=pid)["returncode"]
        return None if code is None else int(code)


class ForkedProcess:
    """What the tests use of ``subprocess.Popen``, for a child of the zygote."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.returncode(self.pid)
        return self.returncode

    def send_signal(self, number: int, /) -> None:
        if self.poll() is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return code

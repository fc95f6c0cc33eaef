"""A pre-imported Python that forks the PinGlass processes of the crash and scale-out tests.

Why: a fresh ``python -m bot`` spends 2.5 s of CPU (5-7 s on a busy 2-core machine) importing before
it does anything — aiogram alone builds ~300 pydantic models at import. The process tests start about
55 of them, and a per-test ``getrusage(RUSAGE_CHILDREN)`` probe put 291 of the suite's 775 CPU seconds
in those children. A fork of an interpreter that imported everything once starts in milliseconds and
is still a real OS process: its own PID, memory and event loop, killable with SIGKILL, running
``bot/__main__.py`` (or ``scheduler/__main__.py``) as ``__main__`` with its own environment.

The zygote is single-threaded and runs no event loop, so forking it is safe. It talks over its
stdin/stdout, one JSON object per line: ``spawn`` forks a child and answers its pid; ``poll`` answers
a child's exit code (as ``subprocess.Popen.returncode`` would: negative for a signal) or null.
Tests of the start-up itself (tests/unit/bot/test_settings.py, the one-line refusals in test_scale_out)
still start a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import random
import runpy
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

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


def serve() -> None:
    """The zygote's loop (run as ``python -c``): answer requests until the test process goes away."""
    for module in PRELOAD:
        importlib.import_module(module)
    gc.freeze()  # the children's collections skip what the imports made (and leave its pages shared)
    exit_codes: dict[int, int | None] = {}
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    for line in iter(requests.readline, b""):
        request = json.loads(line)
        _reap(exit_codes)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _become(request)  # never returns
            exit_codes[pid] = None
            answer: dict[str, Any] = {"pid": pid}
        else:
            answer = {"returncode": exit_codes.get(request["pid"])}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


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
    """The test side: one zygote per test process, started on first use."""

    def __init__(self, env: dict[str, str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from tests.support.zygote import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        self._lock = threading.Lock()

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        with self._lock:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the process zygote exited ({self._process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, module: str, env: dict[str, str], cwd: Path, log_path: Path) -> ForkedProcess:
        answer = self._ask(op="spawn", module=module, env=env, cwd=str(cwd), log=str(log_path))
        return ForkedProcess(self, int(answer["pid"]))

    def returncode(self, pid: int) -> int | None:
        code = self._ask(op="poll", pid=pid)["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)


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

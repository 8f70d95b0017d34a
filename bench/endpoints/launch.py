"""Launch a model server for a point, wait until it answers, and make sure nothing of it survives.

    with LaunchedServer(LaunchSpec(command="vllm serve {model_dir} --port {port}"), log_path, model_dir) as server:
        client = EndpointClient(EndpointSettings(url=server.url, model=...), ...)

The command is split with shlex and run without a shell, in a session of its own (its own process group), on a
free port of 127.0.0.1, its output appended to the caller's log file. Stopping sends SIGTERM to the whole group
(the server's workers too), then SIGKILL after `stop_grace_s`, and waits until no process of the group is left;
it happens on leaving the `with` block whatever ends it (an exception, KeyboardInterrupt). A server that cannot
start, exits, or never becomes ready raises LaunchError with the last lines of its log.

A SIGKILL of this process (the parent's timeout, the OOM killer) runs none of that: on Linux the server is started
with a parent-death signal (SIGTERM when the thread that started it ends), and the isolation's kill path
(bench/isolation/isolate.py) kills the process groups of a killed point's descendants. A process that leaves the
group on purpose (setsid) and outlives its leader escapes both.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BenchError
from .identity import server_identity

HOST = "127.0.0.1"
PLACEHOLDERS = ("port", "host", "model_dir", "python")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
LOG_TAIL_LINES = 20
PROGRESS_EVERY_S = 10.0
POLL_S = 0.25
KILL_WAIT_S = 5.0              # after SIGKILL, only a process stuck in the kernel can still be there
PR_SET_PDEATHSIG = 1           # linux/prctl.h
EXITED_BY_ITSELF = "exited by itself"


class LaunchSpec(BaseModel):
    """`launch:` of a point: the server to start, and how to tell it is ready."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(description="the server's command line; {port}, {host}, {model_dir} and {python} (the "
                                     "harness's own interpreter) are filled in")
    env: dict[str, str] = Field(default_factory=dict, description="added to this process's environment; "
                                                                  "names recorded, values never")
    ready: str = Field("/health", description="the path that answers 200 once the server takes requests")
    timeout_s: float = Field(600.0, gt=0, description="longest wait for readiness")
    stop_grace_s: float = Field(10.0, ge=0, description="from SIGTERM to SIGKILL")

    @field_validator("command")
    @classmethod
    def _known_placeholders(cls, command: str) -> str:
        unknown = sorted(set(PLACEHOLDER.findall(command)) - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; known: {', '.join(PLACEHOLDERS)}")
        if not shlex.split(command):
            raise ValueError("the command is empty")
        return command

    @field_validator("ready")
    @classmethod
    def _path(cls, ready: str) -> str:
        if not ready.startswith("/"):
            raise ValueError("the ready path must start with /")
        return ready


class LaunchError(BenchError):
    """The server could not start, never became ready, or exited while it was in use; carries its log's tail."""


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (another process may still take it before the server binds: the server
    then exits, and the launch fails with its log)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return ""


def parent_death_signal() -> Callable[[], None] | None:
    """Linux: a function for Popen's preexec_fn that has the kernel send SIGTERM to the new process when the
    thread that started it ends (PR_SET_PDEATHSIG), and at once if that thread has already gone. None elsewhere.
    Resolved before the fork, so the forked child only makes the one system call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:      # the parent died between the fork and the call
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group `pgid`."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


class LaunchedServer:
    """A server process for the duration of a `with` block; `record` describes it for the results."""

    def __init__(self, spec: LaunchSpec, log_path: str | Path, model_dir: str | Path | None = None,
                 progress: Callable[[str], None] = print):
        self.spec, self.log_path, self.model_dir, self.progress = spec, Path(log_path), model_dir, progress
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.record: dict = {}
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> LaunchedServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.stop()

    def close(self) -> None:
        """Stop the server; raise LaunchError, with its log's tail, where it had exited by itself while in use."""
        self.stop()
        if self.record.get("stopped") == EXITED_BY_ITSELF:
            raise self._error(f"the server exited with status {self.process.returncode} while in use")

    def start(self) -> None:
        """Start the command and wait until its ready path answers 200."""
        if self.spec.command.count("{model_dir}") and self.model_dir is None:
            raise LaunchError("the launch command uses {model_dir} but this point has no model directory")
        self.port = free_port()
        values = {"port": str(self.port), "host": HOST, "model_dir": str(self.model_dir), "python": sys.executable}
        argv = [PLACEHOLDER.sub(lambda match: values[match.group(1)], arg) for arg in shlex.split(self.spec.command)]
        self.record = {"command": shlex.join(argv), "env": sorted(self.spec.env), "url": self.url,
                       "ready": self.spec.ready, "log": str(self.log_path)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self.log_path, "ab") as log:
            try:
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                env={**os.environ, **self.spec.env}, start_new_session=True,
                                                preexec_fn=parent_death_signal())
            except OSError as exc:
                raise LaunchError(f"cannot start {argv[0]!r}: {exc}") from None
        self.record["pid"] = self.process.pid
        self._wait_ready(started)
        self.record["startup_s"] = round(time.perf_counter() - started, 3)
        self.record["server"] = server_identity(self.url)
        self.progress(f"server ready on {self.url} after {self.record['startup_s']:.1f} s")

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.spec.timeout_s
        next_progress = started
        with httpx.Client(base_url=self.url, timeout=max(POLL_S, 1.0), trust_env=False) as client:
            while True:
                now = time.perf_counter()
                if now >= next_progress:
                    self.progress(f"waiting for the server (pid {self.process.pid}) to answer {self.spec.ready} on "
                                  f"{self.url}: {now - started:.0f} s of {self.spec.timeout_s:.0f} s")
                    next_progress = now + PROGRESS_EVERY_S
                if self.process.poll() is not None:
                    raise self._error(f"the server exited with status {self.process.returncode} before it was ready")
                try:
                    if client.get(self.spec.ready).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.perf_counter() >= deadline:
                    raise self._error(f"the server did not answer 200 on {self.spec.ready} within "
                                      f"{self.spec.timeout_s:g} s")
                time.sleep(POLL_S)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Raise LaunchError, with the log's tail, where the server has exited."""
        if self.process is not None and not self.alive():
            raise self._error(f"the server exited with status {self.process.returncode}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after the grace period, then wait until none of it is left; idempotent.
        Raises LaunchError naming any process still there KILL_WAIT_S after SIGKILL."""
        if self._stopped or self.process is None:
            return
        self._stopped = True
        pgid = self.process.pid          # start_new_session: the leader's pid is the group id
        how = EXITED_BY_ITSELF if self.process.poll() is not None else "SIGTERM"
        self._signal_group(pgid, signal.SIGTERM)
        if not self._wait_group_gone(pgid, self.spec.stop_grace_s):
            how = "SIGKILL"
            self._signal_group(pgid, signal.SIGKILL)
            if not self._wait_group_gone(pgid, KILL_WAIT_S):
                self.record["survivors"] = group_members(pgid)
                raise LaunchError(f"processes of the server's group survived SIGKILL: {self.record['survivors']}")
        self.record["stopped"] = how
        self.record["exit_status"] = self.process.returncode

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):   # the group is gone already
            pass

    def _wait_group_gone(self, pgid: int, timeout_s: float) -> bool:
        deadline = time.perf_counter() + timeout_s
        while True:
            self.process.poll()                  # reap the leader, so it does not linger as a zombie
            if not group_members(pgid):
                self.process.wait()
                return True
            if time.perf_counter() >= deadline:
                return False
            time.sleep(0.05)

    def _error(self, problem: str) -> LaunchError:
        self.stop()
        tail = log_tail(self.log_path)
        return LaunchError(f"{problem}: {self.record.get('command')}\n--- last lines of {self.log_path} ---\n{tail}")

"""Launching a server for a point: real processes, small timeouts; no process of the server's group may survive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import ValidationError

from bench.endpoints.launch import LaunchedServer, LaunchError, LaunchSpec, group_members
from bench.endpoints.nullserver import VERSION

ROOT = Path(__file__).resolve().parents[1]
NULL_SERVER = f"{sys.executable} -m bench.endpoints.nullserver --port {{port}}"
# never listens, ignores SIGTERM, and starts a child (a server's worker) that ignores it too
STUBBORN = (f"{sys.executable} -c \"import signal, subprocess, sys, time; "
            f"signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            f"signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
            f"print('loading weights, worker', child.pid, flush=True); time.sleep(60)\"")


def spec(command: str, **settings) -> LaunchSpec:
    return LaunchSpec(command=command, **{"env": {"PYTHONPATH": str(ROOT)}, **settings})


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_nothing_left(server: LaunchedServer) -> None:
    pgid = server.record["pid"]          # the leader of its own session: its pid is the group's id
    assert group_members(pgid) == [] and gone(pgid)


def test_null_server_is_launched_ready_recorded_and_stopped_with_its_group(tmp_path):
    lines = []
    server = LaunchedServer(spec(NULL_SERVER, env={"PYTHONPATH": str(ROOT), "BENCH_SECRET_SETTING": "x"}),
                            tmp_path / "logs" / "server.log", progress=lines.append)
    with server:
        assert os.getpgid(server.process.pid) == server.process.pid != os.getpgid(0)
        assert httpx.get(f"{server.url}/health", trust_env=False).status_code == 200
    record = server.record
    assert record["command"].endswith(f"-m bench.endpoints.nullserver --port {server.port}")
    assert record["env"] == ["BENCH_SECRET_SETTING", "PYTHONPATH"]       # names only
    assert record["server"]["version"] == VERSION and record["startup_s"] > 0
    assert record["stopped"] == "SIGTERM"
    assert lines[0].startswith("waiting for the server") and lines[-1].startswith("server ready on")
    assert_nothing_left(server)


def test_a_command_that_cannot_start_raises(tmp_path):
    with pytest.raises(LaunchError, match="cannot start '/nonexistent/server'"):
        with LaunchedServer(spec("/nonexistent/server --port {port}"), tmp_path / "server.log",
                            progress=lambda line: None):
            pass


def test_a_server_that_exits_before_ready_raises_with_its_log(tmp_path):
    command = f"{sys.executable} -c \"print('CUDA out of memory'); raise SystemExit(3)\""
    server = LaunchedServer(spec(command), tmp_path / "server.log", progress=lambda line: None)
    with pytest.raises(LaunchError, match=r"exited with status 3 before it was ready(.|\n)*CUDA out of memory"):
        with server:
            pass
    assert_nothing_left(server)


def test_a_server_never_ready_is_killed_with_its_workers_and_raises_with_its_log(tmp_path):
    server = LaunchedServer(spec(STUBBORN, timeout_s=1.0, stop_grace_s=0.3), tmp_path / "server.log",
                            progress=lambda line: None)
    with pytest.raises(LaunchError, match=r"did not answer 200 on /health within 1 s(.|\n)*loading weights") as info:
        with server:
            pass
    worker = int(str(info.value).rsplit("worker", 1)[1].split()[0])
    assert server.record["stopped"] == "SIGKILL"
    assert_nothing_left(server)
    assert gone(worker)


def test_a_server_that_dies_in_use_raises_on_exit_with_its_log(tmp_path):
    server = LaunchedServer(spec(NULL_SERVER), tmp_path / "server.log", progress=lambda line: None)
    with pytest.raises(LaunchError, match=r"exited with status -9 while in use(.|\n)*last lines of"):
        with server:
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{server.url}/health", trust_env=False)
            with pytest.raises(LaunchError, match="exited with status -9"):
                server.check()
    assert_nothing_left(server)


def test_keyboard_interrupt_in_use_stops_the_server(tmp_path):
    server = LaunchedServer(spec(NULL_SERVER), tmp_path / "server.log", progress=lambda line: None)
    with pytest.raises(KeyboardInterrupt):
        with server:
            raise KeyboardInterrupt
    assert server.record["stopped"] == "SIGTERM"
    assert_nothing_left(server)


def test_launch_spec_refuses_unknown_placeholders_and_a_missing_model_dir(tmp_path):
    with pytest.raises(ValidationError, match=r"unknown placeholder \{prot\}"):
        LaunchSpec(command="serve --port {prot}")
    with pytest.raises(LaunchError, match="uses {model_dir}"):
        with LaunchedServer(LaunchSpec(command="serve {model_dir}"), tmp_path / "server.log"):
            pass
    assert LaunchSpec(command="serve --override '{\"a\": 1}' --port {port}").command   # JSON is not a placeholder


def test_a_server_dies_with_the_process_that_launched_it_even_when_that_is_killed(tmp_path):
    """SIGKILL of the launching process (the OOM killer, a parent's timeout) runs no cleanup: the kernel's
    parent-death signal still stops the server."""
    launcher = (f"import os, signal, sys; sys.path.insert(0, {str(ROOT)!r}); "
                "from bench.endpoints.launch import LaunchedServer, LaunchSpec; "
                f"server = LaunchedServer(LaunchSpec(command={NULL_SERVER!r}, env={{'PYTHONPATH': {str(ROOT)!r}}}), "
                f"{str(tmp_path / 'server.log')!r}, progress=lambda line: None); server.start(); "
                "print(server.process.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    result = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL
    server = int(result.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not gone(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(server)

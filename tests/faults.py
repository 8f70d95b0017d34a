"""Child entry points that misbehave, for the runner's crash and timeout tests (importable by spawn)."""

import os
import signal
import time


def killed(point_data, cache_dir, log_path, conn, *_):
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does


def exits(point_data, cache_dir, log_path, conn, *_):
    os._exit(3)


def hangs(point_data, cache_dir, log_path, conn, *_):
    time.sleep(600)

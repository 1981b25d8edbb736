"""scripts/run_distribute.sh ends a failing msrun job quickly and names the failing rank.

Without the cluster timeout and the watcher, a worker that dies before ``init()`` holds the job
for MindSpore's 600 s default (the scheduler waits for it); here the job must end well inside
the configured cluster timeout, print the rank and its last log lines, and exit non-zero."""
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY = os.path.join(ROOT, "tests", "engine", "_failfast_entry.py")


def _launch(tmp_path, mode, timeout_s, workers="2", limit_s=300):
    env = dict(os.environ, LOG_DIR=str(tmp_path / "logs"), MASTER_PORT=str(9300 + os.getpid() % 500),
               MINDCV_EXT_NO_SETUP="1", MINDCV_EXT_DIST_ENTRY=ENTRY, FAILFAST_MODE=mode,
               MINDCV_EXT_CLUSTER_TIMEOUT=str(timeout_s), GLOG_v="3",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    cmd = ["bash", os.path.join(ROOT, "scripts", "run_distribute.sh"), "unused.yaml", workers]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=limit_s)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the job was still running after {limit_s} s:\n{(err.stdout or b'')[-2000:]}")
    return proc, time.monotonic() - start


def test_rank_dying_before_init_fails_within_the_timeout(tmp_path):
    proc, elapsed = _launch(tmp_path, "exit", timeout_s=60, limit_s=150)
    assert proc.returncode != 0
    assert elapsed < 60, f"job took {elapsed:.0f} s to fail"
    assert "rank(s) 1" in proc.stderr and "exit code 3" in proc.stderr, proc.stderr[-2000:]
    assert "worker_1.log" in proc.stderr and "rank 1 gives up before init" in proc.stderr
    assert not _leftover_workers(), "workers still running after the job ended"


@pytest.mark.slow
def test_rank_hanging_after_init_is_ended(tmp_path):
    proc, elapsed = _launch(tmp_path, "hang", timeout_s=15, limit_s=240)
    assert proc.returncode != 0
    assert "rank(s) 1 still running" in proc.stderr and "rank 1 hangs after init" in proc.stderr, proc.stderr[-2000:]
    assert not _leftover_workers()


def test_bad_arguments_are_refused(tmp_path):
    proc, _ = _launch(tmp_path, "ok", timeout_s=60, workers="0", limit_s=30)
    assert proc.returncode == 2 and "NUM_WORKERS" in proc.stderr
    proc, _ = _launch(tmp_path, "ok", timeout_s="-5", limit_s=30)
    assert proc.returncode == 2 and "MINDCV_EXT_CLUSTER_TIMEOUT" in proc.stderr


def _leftover_workers():
    """Processes of this test's worker script still alive (ours only)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    args = fh.read().split(b"\0")
                with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if ENTRY.encode() in args and state != "Z":
                out.append(int(entry))
    return out

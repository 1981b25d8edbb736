"""Run an msrun job and end it early when a worker fails or hangs (used by run_distribute.sh).

msrun alone holds a job whose worker dies before ``init()`` until its scheduler gives up
(``--cluster_time_out``, 600 s by default), and keeps a job alive for as long as one worker hangs
after the others have finished. Here:

* ``--cluster_time_out`` is passed to msrun (``--cluster-timeout`` seconds);
* a worker that exits with an error ends the job after a short grace period, even while the
  scheduler is still waiting;
* once one worker has exited (successfully or not), the others get ``--cluster-timeout`` seconds
  to finish (data-parallel ranks end together) before the job is ended;
* on failure the failing (or hung) ranks and the last lines of their logs are printed, and the
  exit status is non-zero.

    python scripts/msrun_watch.py --workers 2 --log-dir runs/msrun_logs --port 8118 \
        --cluster-timeout 60 -- ENTRY_SCRIPT [ARGS...]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

FAILED = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)")
STARTED = re.compile(r"Start worker process with rank id:(\d+)")
GRACE_S = 5.0     # after msrun reports a failed worker, before the job is ended
UNSEEN_S = 3.0    # a started worker not found among msrun's children this long after its start has exited
TAIL_LINES = 20


def _children(pid):
    """Direct children of ``pid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            pairs = fh.read().split(b"\0")
    except OSError:
        return {}
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _tail(path, n=TAIL_LINES):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [line.rstrip("\n") for line in fh if line.strip()]
    except OSError:
        return f"  (no log at {path})"
    return "\n".join("  " + line for line in lines[-n:])


def _kill_all(msrun, pids):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(pids) + [msrun.pid]:
            for kill in (lambda p: os.killpg(os.getpgid(p), sig), lambda p: os.kill(p, sig)):
                try:
                    kill(pid)
                except (OSError, ProcessLookupError):
                    pass
        try:
            msrun.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cluster-timeout", type=float, default=60.0)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    if args.cluster_timeout <= 0:
        ap.error(f"--cluster-timeout must be a positive number of seconds, got {args.cluster_timeout}")
    if not command:
        ap.error("no entry script given")
    msrun_bin = shutil.which("msrun")
    if msrun_bin is None:
        ap.error("msrun not found on PATH (it comes with MindSpore)")
    os.makedirs(args.log_dir, exist_ok=True)
    cmd = [msrun_bin, f"--worker_num={args.workers}", f"--local_worker_num={args.workers}",
           f"--master_port={args.port}", f"--log_dir={args.log_dir}", "--join=True",
           f"--cluster_time_out={int(round(args.cluster_timeout))}"] + command
    entry = command[0]
    msrun = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    failures = {}  # pid -> exit code, as msrun reports them
    started = {}   # rank -> time msrun reported starting it

    def pump():
        for line in msrun.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            m = FAILED.search(line)
            if m:
                failures[int(m.group(1))] = int(m.group(2))
            m = STARTED.search(line)
            if m:
                started[int(m.group(1))] = time.monotonic()
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    ranks = {}           # worker pid -> rank
    others = set()       # scheduler and helper pids
    first_exit = None    # (time, rank) of the first worker seen gone
    failed_at = None     # time msrun first reported a failed worker
    verdict, stuck, ended = None, [], []

    def stop(signum, frame):  # pylint: disable=unused-argument
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        msrun_argv = _cmdline(msrun.pid)
        while msrun.poll() is None:
            for pid in _children(msrun.pid):
                if pid in ranks or pid in others:
                    continue
                argv = _cmdline(pid)
                if not argv or argv == msrun_argv:  # forked but not exec'd yet: msrun's argv and env
                    continue
                if os.path.basename(argv[0]) == "tail":  # msrun's log followers
                    others.add(pid)
                elif entry in argv:
                    env = _environ(pid)
                    role = env.get("MS_ROLE")
                    if role == "MS_WORKER" and "RANK_ID" in env:
                        ranks[pid] = int(env["RANK_ID"])
                    elif role:  # the scheduler
                        others.add(pid)
            now = time.monotonic()
            running = sorted(r for p, r in ranks.items() if _alive(p))
            seen = set(ranks.values())
            ended = sorted(r for r, t in dict(started).items()
                           if (r in seen and r not in running) or (r not in seen and now - t > UNSEEN_S))
            if first_exit is None and ended:
                first_exit = (now, ended[0])
            if failures and failed_at is None:
                failed_at = now
            if failed_at is not None and now - failed_at >= GRACE_S:
                verdict = "failed"
            elif first_exit and running and now - first_exit[0] > args.cluster_timeout:
                verdict, stuck = "hung", running
            if verdict:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        verdict = "interrupted"
    finally:
        if msrun.poll() is None:
            _kill_all(msrun, set(ranks) | others)
    code = msrun.wait()
    reader.join(timeout=5)
    if verdict is None and code == 0:
        return 0

    def log(rank):
        return os.path.join(args.log_dir, f"worker_{rank}.log")  # msrun's default names
    if verdict == "interrupted":
        print("error: interrupted; distributed job ended", file=sys.stderr)
        return 130
    if verdict == "hung":
        print(f"error: rank(s) {', '.join(map(str, stuck))} still running {args.cluster_timeout:g} s after "
              f"rank {first_exit[1]} exited; job ended", file=sys.stderr)
        bad = stuck
    else:
        # msrun names the failed worker by pid; one that died before it was seen here is a rank
        # never seen alive (the others may have been ended by msrun since)
        never_seen = sorted(set(started) - set(ranks.values()))
        bad = sorted({ranks[p] for p in failures if p in ranks}) or never_seen or ended or list(range(args.workers))
        codes = ", ".join(f"exit code {c}" for c in failures.values())
        print(f"error: distributed job failed: rank(s) {', '.join(map(str, bad))} "
              f"({codes or f'msrun exit status {code}'})", file=sys.stderr)
    for rank in bad:
        print(f"--- last lines of {log(rank)}:\n{_tail(log(rank))}", file=sys.stderr)
    if not ranks:
        sched = os.path.join(args.log_dir, "scheduler.log")
        print(f"--- last lines of {sched}:\n{_tail(sched)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

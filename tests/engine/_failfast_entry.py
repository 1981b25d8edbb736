"""Worker script for tests/engine/test_distributed_failfast.py (run by msrun, not by pytest).

FAILFAST_MODE: ``exit`` -> rank 1 exits with status 3 before ``init()``; ``hang`` -> rank 1 sleeps
after ``init()`` while rank 0 finishes; anything else -> both ranks init and finish."""
import os
import sys
import time

MODE = os.environ.get("FAILFAST_MODE", "ok")
RANK = os.environ.get("RANK_ID")
WORKER = os.environ.get("MS_ROLE") == "MS_WORKER"
print(f"worker script started: rank {RANK}, role {os.environ.get('MS_ROLE')}", flush=True)
if WORKER and RANK == "1" and MODE == "exit":
    print("rank 1 gives up before init", flush=True)
    sys.exit(3)

import mindspore as ms  # noqa: E402
from mindspore.communication import get_group_size, get_rank, init  # noqa: E402

ms.set_context(device_target="CPU")
init()
print(f"rank {get_rank()} of {get_group_size()} joined", flush=True)
if MODE == "hang" and get_rank() == 1:
    print("rank 1 hangs after init", flush=True)
    time.sleep(3600)
print(f"rank {get_rank()} done", flush=True)

"""Data-parallel set-up under msrun (any device): rank, world size, gradient averaging."""
import os
from typing import Optional, Tuple

import mindspore as ms

_STATE = {"initialised": False, "rank": 0, "world": 1}


def launched_by_msrun() -> bool:
    return int(os.environ.get("MS_WORKER_NUM", os.environ.get("RANK_SIZE", "1")) or 1) > 1


def init_distributed(enabled: Optional[bool] = None) -> Tuple[int, int]:
    """Initialise communication once when launched with several workers; returns (rank, world)."""
    if enabled is None:
        enabled = launched_by_msrun()
    if not enabled:
        return 0, 1
    if not _STATE["initialised"]:
        from mindspore.communication import get_group_size, get_rank, init
        init()
        _STATE.update(initialised=True, rank=get_rank(), world=get_group_size())
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=_STATE["world"])
    return _STATE["rank"], _STATE["world"]

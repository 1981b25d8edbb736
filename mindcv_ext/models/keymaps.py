"""Shared pieces of the families' converters for official checkpoints."""
from typing import List, Tuple


class ConversionError(ValueError):
    """A checkpoint that cannot be mapped onto the model; the message names every bad key."""


def bn_key_map(torch_prefix: str, ms_prefix: str) -> List[Tuple[str, str]]:
    """The (official key, MindSpore name) pairs of one BatchNorm layer."""
    pairs = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
             ("running_var", "moving_variance"))
    return [(f"{torch_prefix}.{t}", f"{ms_prefix}.{m}") for t, m in pairs]

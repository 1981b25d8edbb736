"""Small helpers shared by the model families."""


def make_divisible(value: float, divisor: int = 8, min_value: int = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``.

    The result is at least ``min_value`` (``divisor`` when not given) and, when rounding down
    would lose more than ``1 - round_limit`` of ``value``, one ``divisor`` is added back. This is
    the channel-rounding rule of the MobileNet/GhostNet family.
    """
    if divisor <= 0:
        raise ValueError(f"make_divisible: divisor must be a positive integer, got {divisor}")
    if value <= 0:
        raise ValueError(f"make_divisible: value must be positive, got {value}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return int(rounded)


def to_pair(value, what: str):
    """``value`` as an (int, int) pair; ``what`` names the argument in the error (e.g.
    ``"AdderConv2d: padding"``)."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(i, int) for i in value):
        return tuple(value)
    raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")


KERNEL_CHOICES = ("auto", "custom", "composite")


def parse_kernels(value, what: str = "kernels"):
    """The one reader of the ``kernels`` option: ``auto``/``None`` -> ``None`` (the layer decides:
    custom where its kernel compiles on this device), ``custom`` or ``composite`` as given."""
    if value is None or value == "auto":
        return None
    if value in ("custom", "composite"):
        return value
    raise ValueError(f"{what} must be one of {', '.join(KERNEL_CHOICES)}, got {value!r}")

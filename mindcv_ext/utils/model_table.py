"""Print the README's model table: ``python -m mindcv_ext.utils.model_table [PATTERN ...]``.

Params are trainable parameters; MACs are counted at each model's default input size
(its ``default_cfg``); the status column is the family's ``Family.status``.
"""
import sys

from mindcv_ext.models import create_model, list_models
from mindcv_ext.models.registry import default_cfg, family_hooks
from mindcv_ext.utils.summary import count_macs, count_params


def _fmt(n: float) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M"


def rows(patterns):
    for name in sorted({m for p in patterns for m in list_models(p)}):
        size = default_cfg(name)["input_size"][-1]
        net = create_model(name)
        yield (name, _fmt(count_params(net)), f"{_fmt(count_macs(net, (1, 3, size, size)))} ({size})",
               family_hooks(name).status)


def main(argv=None):
    patterns = (argv if argv is not None else sys.argv[1:]) or ["*"]
    print("| model | params | MACs (input) | status |\n| --- | --- | --- | --- |")
    for row in rows(patterns):
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()

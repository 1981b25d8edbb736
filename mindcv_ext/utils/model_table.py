"""Print the README's model table: ``python -m mindcv_ext.utils.model_table [PATTERN ...]``.

Params are trainable parameters; MACs are counted at each model's default input size
(``DEFAULT_INPUT[name]`` in its family module, else 224). A family module may set ``STATUS``.
"""
import sys

from mindcv_ext.models import create_model, list_models, model_module
from mindcv_ext.utils.summary import count_macs, count_params


def _fmt(n: float) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M"


def rows(patterns):
    for name in sorted({m for p in patterns for m in list_models(p)}):
        module = model_module(name)
        size = getattr(module, "DEFAULT_INPUT", {}).get(name, 224)
        net = create_model(name)
        yield (name, _fmt(count_params(net)), f"{_fmt(count_macs(net, (1, 3, size, size)))} ({size})",
               getattr(module, "STATUS", "tested"))


def main(argv=None):
    patterns = (argv if argv is not None else sys.argv[1:]) or ["*"]
    print("| model | params | MACs (input) | status |\n| --- | --- | --- | --- |")
    for row in rows(patterns):
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()

"""Check that imports run one way: ``python -m mindcv_ext.utils.layers_check`` (exit 1 on a violation).

ascend_kernels -> config/utils -> layers -> quant -> models -> data/engine/export/convert and the
method internals -> tasks -> cli. A module may import its own level or lower ones, never higher.
"""
import ast
import os
import sys
from typing import List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEVELS = {
    "ascend_kernels": 0,
    "mindcv_ext.config": 1, "mindcv_ext.utils": 1,
    "mindcv_ext.layers": 2,
    "mindcv_ext.quant": 3,
    "mindcv_ext.models": 4,
    "mindcv_ext.data": 5, "mindcv_ext.engine": 5, "mindcv_ext.export": 5, "mindcv_ext.convert": 5,
    "mindcv_ext.nas": 5, "mindcv_ext.mim": 5, "mindcv_ext.da": 5, "mindcv_ext.seg": 5, "mindcv_ext.seg3d": 5,
    "mindcv_ext.tasks": 6,
    "mindcv_ext.cli": 7, "mindcv_ext.__main__": 7, "mindcv_ext": 7,
    "mindcv_ext.utils.model_table": 7, "mindcv_ext.utils.layers_check": 7,
}


def level(module: str):
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LEVELS:
            return LEVELS[key]
    return None


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path: str) -> List[Tuple[int, str]]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    name = _module_name(path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names if node.module is None]
    return out


def violations() -> List[str]:
    found = []
    for pkg in ("mindcv_ext", "ascend_kernels"):
        for folder, _, files in os.walk(os.path.join(ROOT, pkg)):
            for fname in files:
                if not fname.endswith(".py"):
                    continue
                path = os.path.join(folder, fname)
                mine = level(_module_name(path))
                for lineno, target in _imports(path):
                    theirs = level(target)
                    if mine is not None and theirs is not None and theirs > mine:
                        found.append(f"{os.path.relpath(path, ROOT)}:{lineno}: {_module_name(path)} (level {mine}) "
                                     f"imports {target} (level {theirs})")
    return found


def main() -> int:
    bad = violations()
    for line in bad:
        print(line)
    print(f"{len(bad)} upward import(s)" if bad else "imports run one way")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert official PyTorch checkpoints into MindSpore checkpoints.

Reading: ``.pth``/``.pth.tar``/``.pt`` through torch (when installed), ``.npz`` and
``.safetensors`` without it. Generic clean-up happens here (wrapper dicts, ``module.``
prefixes, profiling and BN counter entries); each model family maps the remaining official
keys to its own parameter names in ``convert_official_state_dict(state_dict, model_name)``
(with a ``model_kwargs`` argument when it needs the options the model is built with).
"""
import inspect
import os
from typing import Dict

import numpy as np

from .models.keymaps import ConversionError, bn_key_map  # noqa: F401  (re-exported)

_WRAPPER_KEYS = ("state_dict_ema", "state_dict", "model", "net", "module", "segmenter")
_DROP_SUFFIXES = ("total_ops", "total_params", "num_batches_tracked")


def load_state_dict_file(path: str, prefer_ema: bool = False) -> Dict[str, np.ndarray]:
    """Read a state dict file into ``{key: float32 ndarray}``, unwrapped and cleaned."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    lower = path.lower()
    if lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            raw = {k: data[k] for k in data.files}
    elif lower.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ConversionError("reading .safetensors needs the 'safetensors' package") from err
        raw = load_file(path)
    elif lower.endswith((".pth", ".pt", ".tar", ".bin")):
        try:
            import torch
        except ImportError as err:
            raise ConversionError(
                f"reading '{path}' needs torch (pip install torch); or save the state dict "
                "as .npz or .safetensors first") from err
        raw = torch.load(path, map_location="cpu", weights_only=False)
    else:
        raise ConversionError(f"unknown checkpoint format '{path}' (use .pth, .pth.tar, .npz or .safetensors)")
    return clean_state_dict(raw, prefer_ema=prefer_ema)


def clean_state_dict(raw, prefer_ema: bool = False) -> Dict[str, np.ndarray]:
    """Unwrap training wrappers, strip ``module.``, drop profiling/counter entries, to numpy."""
    if not isinstance(raw, dict):
        raise ConversionError(f"a checkpoint must hold a dict of tensors, got {type(raw).__name__}")
    order = _WRAPPER_KEYS if prefer_ema else _WRAPPER_KEYS[1:] + _WRAPPER_KEYS[:1]
    for key in order:
        if isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    out = {}
    for key, value in raw.items():
        if key.endswith(_DROP_SUFFIXES):
            continue
        if key.startswith("module."):
            key = key[len("module."):]
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().float().numpy()
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise ConversionError(f"entry '{key}' is not a tensor ({type(value).__name__})")
        out[key] = value.astype(np.float32) if value.dtype.kind == "f" else value
    if not out:
        raise ConversionError("the checkpoint holds no tensors")
    return out


def convert_state_dict(model_name: str, state_dict: Dict[str, np.ndarray], **model_kwargs) -> Dict[str, np.ndarray]:
    """Map an official state dict onto ``model_name`` and check every name and shape."""
    from .models import create_model, family_hooks
    mapper = family_hooks(model_name).converter
    if mapper is None:
        raise ConversionError(f"model '{model_name}' has no converter for official checkpoints")
    state_dict = clean_state_dict(dict(state_dict))
    # a family whose converter needs the build options (e.g. frozen SNN-MLP LIF scalars) takes model_kwargs
    if "model_kwargs" in inspect.signature(mapper).parameters:
        mapped = mapper(state_dict, model_name, model_kwargs=dict(model_kwargs))
    else:
        mapped = mapper(state_dict, model_name)
    net = create_model(model_name, **model_kwargs)
    expected = {name: tuple(p.shape) for name, p in net.parameters_dict().items()}
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(np.shape(mapped[k]))} vs model {expected[k]}"
                  for k in sorted(set(mapped) & set(expected)) if tuple(np.shape(mapped[k])) != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model parameters have no value: {', '.join(missing[:20])}")
    if unexpected:
        problems.append(f"{len(unexpected)} converted keys are not in the model: {', '.join(unexpected[:20])}")
    if mismatched:
        problems.append(f"{len(mismatched)} shapes differ: {'; '.join(mismatched[:20])}")
    if problems:
        raise ConversionError(f"cannot convert onto '{model_name}': " + " | ".join(problems))
    return {k: np.asarray(v, dtype=np.float32) for k, v in mapped.items()}


def convert_checkpoint(model_name: str, src: str, out: str, prefer_ema: bool = False, **model_kwargs) -> int:
    """Convert file ``src`` for ``model_name`` and save a MindSpore checkpoint at ``out``."""
    from .utils.checkpoint import save_param_dict
    mapped = convert_state_dict(model_name, load_state_dict_file(src, prefer_ema=prefer_ema), **model_kwargs)
    save_param_dict(mapped, out)
    return len(mapped)

"""Model families. Importing this package registers every model."""
import importlib

from .registry import (Family, ModelArgumentError, UnknownModelError, create_model, default_cfg, family_hooks,
                       is_model, list_models, model_family, register_model)

# One module per family; each registers its builders on import. A family that fails to import
# (for instance a missing optional dependency) must not hide the others, so errors surface on use.
_FAMILIES = ["resnet", "ghostnetv2", "vig", "snnmlp", "adder_resnet", "adabin", "shot", "maskgroup", "vit", "swin",
             "darts", "segformer", "tokenfusion", "tokenfusion_gen"]
for _fam in _FAMILIES:
    try:
        importlib.import_module(f"{__name__}.{_fam}")
    except ModuleNotFoundError as _err:  # family not written yet
        if _err.name != f"{__name__}.{_fam}":
            raise

__all__ = ["create_model", "list_models", "register_model", "is_model", "model_family", "family_hooks", "default_cfg",
           "Family", "UnknownModelError", "ModelArgumentError"]

"""mindcv-ext: efficient vision models and custom operators for MindSpore."""
__version__ = "0.1.0"

import ascend_kernels  # noqa: F401,E402  (before mindspore loads: sets the OpenMP wait policy)
from .models import create_model, list_models, register_model  # noqa: E402

__all__ = ["create_model", "list_models", "register_model", "__version__"]

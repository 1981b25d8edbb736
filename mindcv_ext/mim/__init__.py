"""FastMIM internals (Guo et al., arXiv 2212.06593; ggjy/FastMIM.pytorch): masking, HOG target,
decoder, the loss-only pre-training wrapper, layer-wise lr decay and FastMIM-P phases."""
from .decoder import MIMDecoder
from .hog import HOGLayer
from .lr_decay import layer_decay_param_groups, layer_decay_scales, model_layer_decay_scales
from .masking import BlockMaskGenerator, block_mask, num_masked
from .model import RECIPES, MIMModel, create_mim_model
from .phases import Phase, make_phases, phase_for_epoch, pretrain_lr_per_step, warmup_cosine_lr

__all__ = ["MIMDecoder", "HOGLayer", "BlockMaskGenerator", "block_mask", "num_masked", "MIMModel",
           "create_mim_model", "RECIPES", "layer_decay_scales", "model_layer_decay_scales",
           "layer_decay_param_groups", "Phase", "make_phases", "phase_for_epoch", "pretrain_lr_per_step",
           "warmup_cosine_lr"]

"""The ``quant:`` config section of AdderNet post-training quantization (``mindcv-ext quantize``).

Declared on import of the adder model family, so an adder config that carries its PTQ settings
validates for every command (train, eval, quantize). Defaults follow the official AdderQuant code
(compression spec 2.2, 2.7): 4 kernel groups, 202 calibration batches of augmented training
images, a 0.9997 quantile of |x| for the activation range, 202 BN re-estimation batches.
"""
from ..config import register_section

SECTION = "quant"
KEYS = {
    "groups": ((int,), 4),                  # kernel clusters per adder layer (redistribute)
    "calib_batches": ((int,), 202),         # training batches (data.batch_size each) for activation ranges
    "bn_recalib_batches": ((int,), 202),    # training batches run in train mode to refresh BN; 0 = off
    "act_quantile": ((float,), 0.9997),     # quantile of |x| per calibration batch (act_range: quantile)
    "act_range": ((str,), "quantile"),      # quantile | max: how the activation range a_r is measured
    "small_group_scale": ((str,), "weight"),  # weight (official) | act_range: scale of groups with max|W| <= a_r
    "seed": ((int,), 0),                    # k-means seed
    "integer": ((bool,), True),             # integer-code forward (True) or fake-quant float forward (False)
    "export": ((bool,), False),             # export the last quantized model to MindIR and verify it
}
CHOICES = {"act_range": ("quantile", "max"), "small_group_scale": ("weight", "act_range")}

register_section(SECTION, KEYS, CHOICES)

"""Quantization: binary quantizer objects and layers (AdaBin, sign BNN), bit-packed inference.

AdderNet post-training quantization lives in the ``adder_*`` modules of this package.
"""
from .binary import (AdaBinActivationQuantizer, AdaBinWeightQuantizer, BinaryConv2d, BinaryDense,
                     ProgressiveSchedule, Quantizer, SignQuantizer, get_quantizer, model_size_bits,
                     model_size_summary, set_progressive)
from .inference import threshold_ties, to_inference

__all__ = ["AdaBinActivationQuantizer", "AdaBinWeightQuantizer", "BinaryConv2d", "BinaryDense",
           "ProgressiveSchedule", "Quantizer", "SignQuantizer", "get_quantizer", "model_size_bits",
           "model_size_summary", "set_progressive", "threshold_ties", "to_inference"]

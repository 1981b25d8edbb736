"""Internals of RGB-D semantic segmentation with TokenFusion: loss, metrics, exchange statistics,
generated RGB-D scenes, the NYUDv2 reader and its augmentation, palettes, score-map AUROC and the
optimiser schedule. Plain functions and Cells; the segmentation task calls them."""
from .corruption import auroc, corruption_auroc, token_mask
from .exchange import exchanged_fraction, score_maps
from .loss import TokenFusionLoss, score_l1, seg_cross_entropy, tokenfusion_loss
from .metrics import SegMeter, confusion_matrix, logits_to_labels, segmentation_scores
from .palette import colorize, segmentation_palette, write_score_png, write_segmentation_png

__all__ = ["auroc", "corruption_auroc", "token_mask", "exchanged_fraction", "score_maps", "TokenFusionLoss",
           "score_l1", "seg_cross_entropy", "tokenfusion_loss", "SegMeter", "confusion_matrix", "logits_to_labels",
           "segmentation_scores", "colorize", "segmentation_palette", "write_segmentation_png", "write_score_png"]

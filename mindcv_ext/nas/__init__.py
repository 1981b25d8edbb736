"""DropNAS search internals (Hong et al., IJCAI 2020): search spaces and grouped operation dropout,
the supernet, one search iteration, genotype derivation and the search pictures."""
from .search import SearchStep, clip_grad_norm, search_lr
from .space import (SPACES, MaskSampler, SearchSpace, SearchSpaceError, adjust_alphas, derive_genotype,
                    edge_kept_ratios, get_space, parametric_share, shares)
from .supernet import MixedOp, SearchCell, SearchNetwork, kept_softmax

__all__ = ["SearchStep", "clip_grad_norm", "search_lr", "SPACES", "MaskSampler", "SearchSpace",
           "SearchSpaceError", "adjust_alphas", "derive_genotype", "edge_kept_ratios", "get_space",
           "parametric_share", "shares", "MixedOp", "SearchCell", "SearchNetwork", "kept_softmax"]
from .plots import plot_alpha_shares, plot_genotype, plot_share_comparison  # noqa: E402

__all__ += ["plot_alpha_shares", "plot_genotype", "plot_share_comparison"]

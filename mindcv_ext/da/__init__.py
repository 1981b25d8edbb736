"""Source-free domain adaptation internals (SFDA-DE, Ding et al., CVPR 2022): anchor-initialised
spherical k-means, filtering, estimated source Gaussians, class-aware sampling, CDD, schedules,
benchmark domains and CPU data generators."""
from .cdd import CDD, SFDALoss
from .clustering import ClusteringResult, align_clusters, cosine_distance, spherical_kmeans
from .domains import (BENCHMARKS, OFFICE31_CLASSES, OFFICE_HOME_CLASSES, VISDA2017_CLASSES, DomainFolderError,
                      check_benchmark_domain, check_domain_folder)
from .estimation import SourceGaussians, estimate_source_gaussians, estimated_source_mean
from .filtering import Selection, filter_classes, filter_samples, select
from .loop import LoopState, extract_features, refresh
from .metrics import (accuracy, confusion_matrix, kept_ratio, mean_class_accuracy, pseudo_label_accuracy,
                      save_confusion_png, save_loop_plot)
from .optim import adaptation_param_groups, freeze, inv_lr, inv_lr_schedule
from .sampler import ClassAwareSampler
from .source import SourceCheckpointError, load_source_weights
from .synthetic import GaussianToy, make_digits_shift, make_gaussian_toy, shift_digits

__all__ = ["CDD", "SFDALoss", "ClusteringResult", "align_clusters", "cosine_distance", "spherical_kmeans",
           "BENCHMARKS", "OFFICE31_CLASSES", "OFFICE_HOME_CLASSES", "VISDA2017_CLASSES", "DomainFolderError",
           "check_benchmark_domain", "check_domain_folder", "SourceGaussians", "estimate_source_gaussians",
           "estimated_source_mean", "Selection", "filter_classes", "filter_samples", "select", "LoopState",
           "extract_features", "refresh", "accuracy", "confusion_matrix", "kept_ratio",
           "mean_class_accuracy", "pseudo_label_accuracy", "save_confusion_png", "save_loop_plot",
           "adaptation_param_groups", "freeze", "inv_lr", "inv_lr_schedule", "ClassAwareSampler",
           "SourceCheckpointError", "load_source_weights", "GaussianToy", "make_digits_shift",
           "make_gaussian_toy", "shift_digits"]

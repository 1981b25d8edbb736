"""3D instance segmentation internals (MaskGroup on the PointGroup base): losses and their
targets, host-side grouping, MaskScoreNet targets, inference, ScanNet AP, scene data."""
from .graph import PointGraph, build_point_graph, concat_graphs, pad_graph
from .evaluation import AP_OVERLAPS, average_precision, evaluate_instances
from .grouping import (GroupingError, Proposals, ball_query_components, hierarchical_grouping, merge_proposals,
                       single_radius_grouping)
from .inference import Instance, finalize_instances, point_nms
from .losses import (IGNORE_LABEL, MaskGroupLoss, mask_loss, offset_direction_loss, offset_l1_loss, offset_targets, score_loss,
                     semantic_loss)
from .scenes import ROOM_CLASSES, ROOM_INSTANCE_CLASSES, RoomScenes, make_room
from .targets import PackedProposals, pack_proposals, proposal_instance_iou, proposal_targets, score_targets

__all__ = [
    "PointGraph",
    "build_point_graph",
    "concat_graphs",
    "pad_graph",
    "AP_OVERLAPS",
    "average_precision",
    "evaluate_instances",
    "GroupingError",
    "Proposals",
    "ball_query_components",
    "hierarchical_grouping",
    "merge_proposals",
    "single_radius_grouping",
    "Instance",
    "finalize_instances",
    "point_nms",
    "IGNORE_LABEL",
    "MaskGroupLoss",
    "mask_loss",
    "offset_direction_loss",
    "offset_l1_loss",
    "offset_targets",
    "score_loss",
    "semantic_loss",
    "ROOM_CLASSES",
    "ROOM_INSTANCE_CLASSES",
    "RoomScenes",
    "make_room",
    "PackedProposals",
    "pack_proposals",
    "proposal_instance_iou",
    "proposal_targets",
    "score_targets",
]

"""Train steps over any number of inputs, and the model + loss wrapper of supervised tasks."""
from typing import Optional

import mindspore as ms
from mindspore import nn, ops

from .optim import check_group_clip, clip_by_group


class TrainStep(nn.TrainOneStepCell):
    """One optimizer step of ``net_with_loss(*inputs) -> loss``: gradients (averaged across ranks
    under data parallel), optional global-norm clipping (of all gradients together, or per group:
    ``group_clip = (group id of every optimizer parameter, clip norm of every group)``), update.
    Returns the loss."""

    def __init__(self, net_with_loss: nn.Cell, optimizer: nn.Optimizer, clip_grad: Optional[float] = None,
                 group_clip=None):
        super().__init__(net_with_loss, optimizer)
        self.clip_grad = clip_grad
        self.group_ids, self.group_norms = (tuple(group_clip[0]), tuple(group_clip[1])) if group_clip else ((), ())
        if group_clip:
            check_group_clip(self.group_ids, self.group_norms)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        grads = self.grad(self.network, self.weights)(*inputs, ops.ones_like(loss))
        grads = self.grad_reducer(grads)
        if self.group_ids:
            grads = clip_by_group(grads, self.group_ids, self.group_norms)
        elif self.clip_grad:
            grads = ops.clip_by_global_norm(grads, self.clip_grad)
        self.optimizer(grads)
        return loss


class WithLoss(nn.Cell):
    """``(*model_inputs, target) -> loss_fn(net(*model_inputs), target)``."""

    def __init__(self, net: nn.Cell, loss_fn: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net, self.loss_fn = net, loss_fn

    def construct(self, *batch):
        return self.loss_fn(self.net(*batch[:-1]), batch[-1])


def compiled(step: nn.Cell, jit: bool):
    """The step's ``construct`` compiled once (graph mode) or the Cell itself (PyNative)."""
    return ms.jit(step.construct) if jit else step

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn


class _SmoothedCE(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.loss = nn.CrossEntropyLoss(label_smoothing=0.1)  # SHOT's source recipe uses epsilon = 0.1

    def construct(self, x, y):
        return self.loss(self.net(x), y)


def train_source(net, x, y, epochs, lr=0.05, batch_size=64, seed=0):
    """Source training with label-smoothed cross-entropy in a compiled step; returns the last loss."""
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(seed)
    opt = nn.SGD(net.trainable_params(), learning_rate=lr, momentum=0.9, weight_decay=5e-4)
    step = nn.TrainOneStepCell(_SmoothedCE(net), opt)
    net.set_train(True)
    rng, y = np.random.default_rng(seed), y.astype(np.int32)
    loss = None
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        for i in range(0, len(x) - batch_size + 1, batch_size):
            b = perm[i:i + batch_size]
            loss = float(step(ms.Tensor(x[b]), ms.Tensor(y[b])).asnumpy())
    net.set_train(False)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return loss


@pytest.fixture(scope="session")
def source_trainer():
    return train_source

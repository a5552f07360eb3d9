"""Label smoothing as a loss-aware penalty: the trained loss becomes ``F.cross_entropy(..., label_smoothing=eps)``.

The core's loss is the plain cross-entropy plus every penalty. Smoothed cross-entropy is
(1 - eps) * CE + eps * mean over classes of -log_softmax(logits), so the penalty is
eps * (that mean - CE), averaged over the mini-batch; the sum is the smoothed loss exactly.
"""

import attrs
import torch.nn.functional as F
from attrs.validators import ge, lt

from mnist_trainer import Regularizer, hookimpl, number, option, options_hook


@attrs.frozen
class LabelSmoothingOptions:
    eps: float = option(0.1, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")


mnist_trainer_options = options_hook(LabelSmoothingOptions)


def smoothing_penalty(logits, labels, eps):
    """What turns ``F.cross_entropy(logits, labels)`` into ``F.cross_entropy(logits, labels, label_smoothing=eps)``."""
    log_probabilities = F.log_softmax(logits, dim=1)
    uniform = -log_probabilities.mean()  # the batch mean of each row's mean over classes
    return eps * (uniform - F.nll_loss(log_probabilities, labels))


@hookimpl
def mnist_trainer_regularizer(options):
    eps = options.eps
    return Regularizer(
        f"label smoothing eps={eps} (loss = cross_entropy with label_smoothing={eps})",
        penalty=lambda network, logits, labels: smoothing_penalty(logits, labels, eps),
    )

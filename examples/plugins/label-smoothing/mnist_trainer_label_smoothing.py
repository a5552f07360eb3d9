"""Label smoothing in the loss stage: the training loss is ``F.cross_entropy(..., label_smoothing=eps)``.

Each target class keeps 1 - eps of the probability and the rest is spread evenly over all
classes, so the network is not pushed towards infinitely confident logits.
"""

import attrs
import torch.nn.functional as F
from attrs.validators import ge, lt

from mnist_trainer import Loss, hookimpl, number, option, options_hook


@attrs.frozen
class LabelSmoothingOptions:
    eps: float = option(0.1, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")


mnist_trainer_options = options_hook(LabelSmoothingOptions)


@hookimpl
def mnist_trainer_loss(options):
    eps = options.eps
    return Loss(f"cross-entropy with label smoothing eps={eps}",
                lambda logits, labels: F.cross_entropy(logits, labels, label_smoothing=eps))

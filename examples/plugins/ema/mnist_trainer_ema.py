"""An exponential moving average of the weights, evaluated, recorded and saved in place of the last step's.

The last step's weights carry that mini-batch's noise; an average over the recent steps sits nearer the
middle of where training wanders and usually tests a little better, at the cost of one ``lerp_`` per
tensor per step. The optimizer still trains the network's own weights. The average is debiased (each
step's weight is ``(1 - decay) / (1 - decay**t)``), so the first step's weights start it rather than the
initialisation. Batch norm's running statistics are averaged with the same decay (see the README).
"""

import attrs
from attrs.validators import ge, lt

from mnist_trainer import PluginState, every_rank, hookimpl, number, option, options_hook, state_hook


@attrs.frozen
class EmaOptions:
    decay: float = option(0.99, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")


@attrs.define
class Average(PluginState):
    """The average of the network's state_dict over the steps so far, and how many steps it holds."""

    weights: dict | None = None
    steps: int = 0


mnist_trainer_options = options_hook(EmaOptions)
mnist_trainer_state = state_hook(Average)


def update(average: Average, current: dict, decay: float) -> None:
    """Fold one step's `current` state_dict into `average`: floats move towards it, counters are copied."""
    average.steps += 1
    if average.weights is None:
        average.weights = {key: tensor.detach().clone() for key, tensor in current.items()}
        return
    weight = (1 - decay) / (1 - decay**average.steps)
    for key, tensor in current.items():
        if tensor.is_floating_point():
            average.weights[key].lerp_(tensor.detach(), weight)
        else:  # batch norm's num_batches_tracked: a count, not something to average
            average.weights[key].copy_(tensor)


@hookimpl
@every_rank  # evaluation weights are asked in every process under torchrun: each keeps its own (equal) average
def mnist_trainer_step_end(run):
    update(run.state(Average), run.network.state_dict(), run.settings.options(EmaOptions).decay)


@hookimpl
@every_rank
def mnist_trainer_evaluation_weights(run):
    # a copy: the core may hold these weights (the last finished epoch's) while the next steps move the average
    average = run.state(Average).weights
    return None if average is None else {key: tensor.clone() for key, tensor in average.items()}

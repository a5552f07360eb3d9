"""The network: hidden blocks ``Linear -> norm -> activation -> dropout`` and an output Linear.

The slot order is fixed here, not by the order plugins were named, so one selection
of plugins always builds the same network.
"""

from __future__ import annotations

import attrs
from torch import nn

from .stages import Activation, Norm, Regularizer

INPUTS, CLASSES = 784, 10


@attrs.frozen
class BlockSpec:
    """What fills each slot of every hidden block; regularizers in plugin-name order."""

    activation: Activation
    norm: Norm | None = None
    regularizers: tuple[Regularizer, ...] = ()


class Network(nn.Sequential):
    """Hidden blocks then the output layer, as one `nn.Sequential`, with named access for plugins."""

    def __init__(self, widths: tuple[int, ...], spec: BlockSpec):
        layers = []
        fan_in = INPUTS
        for width in widths:
            layers.append(_block(fan_in, width, spec))
            fan_in = width
        super().__init__(*layers, nn.Linear(fan_in, CLASSES))
        self.spec = spec

    @property
    def blocks(self) -> list[nn.Sequential]:
        return list(self)[:-1]

    @property
    def hidden_linears(self) -> list[nn.Linear]:
        return [block.linear for block in self.blocks]

    @property
    def output(self) -> nn.Linear:
        return self[-1]


def _block(fan_in: int, width: int, spec: BlockSpec) -> nn.Sequential:
    block = nn.Sequential()
    block.add_module("linear", nn.Linear(fan_in, width))
    if spec.norm is not None:
        block.add_module("norm", spec.norm.build(width))
    block.add_module("activation", spec.activation.build())
    dropouts = [r.dropout() for r in spec.regularizers if r.dropout is not None]
    for index, module in enumerate(dropouts):
        block.add_module("dropout" if len(dropouts) == 1 else f"dropout{index}", module)
    return block

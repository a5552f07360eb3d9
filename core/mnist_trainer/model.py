"""The core's model, the MLP: hidden blocks ``Linear -> norm -> activation -> dropout`` and an output Linear.

The slot order is fixed here, not by the order plugins were named, so one selection
of plugins always builds the same network.
"""

from __future__ import annotations

from torch import nn

from .stages import Slots

DEFAULT_HIDDEN = (256, 256)


class MLP(nn.Sequential):
    """Hidden blocks then the output layer, as one `nn.Sequential`: `sizes` are the inputs, each hidden width, the
    classes."""

    def __init__(self, sizes: tuple[int, ...], slots: Slots):
        blocks = [_block(fan_in, width, slots) for fan_in, width in zip(sizes[:-2], sizes[1:-1])]
        super().__init__(*blocks, nn.Linear(sizes[-2], sizes[-1]))

    @property
    def blocks(self) -> list[nn.Sequential]:
        return list(self)[:-1]


def _block(fan_in: int, width: int, slots: Slots) -> nn.Sequential:
    block = nn.Sequential()
    norms = slots.norm(width)
    block.add_module("linear", nn.Linear(fan_in, width, bias=not norms))  # a norm's shift replaces the bias
    for norm in norms:
        block.add_module("norm", norm)
    block.add_module("activation", slots.activation())
    dropouts = slots.dropout()
    for index, module in enumerate(dropouts):
        block.add_module("dropout" if len(dropouts) == 1 else f"dropout{index}", module)
    return block

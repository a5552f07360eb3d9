"""The course's Lab 11 convolutional network in the model stage, its blocks filled by the slot plugins.

Each block is a 3x3 convolution (padding 1) -> norm slot (2-d) -> activation slot ->
2x2 max-pool, halving the image; after the last, the dropout slot and a Linear to the
10 classes. With the default 32 and 64 channels and ReLU this is Lab 11's network.
"""

import attrs
from torch import nn

from mnist_trainer import Model, hookimpl, option, options_hook

SIDE, CLASSES = 28, 10
MAX_BLOCKS = 4  # each block halves the side: 28 -> 14 -> 7 -> 3 -> 1


def to_channels(value) -> tuple[int, ...]:
    """``"32,64"`` (or a sequence, as a saved run records it) -> ``(32, 64)``: 1 to 4 positive counts."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        channels = tuple(int(part) for part in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a comma-separated list of whole numbers") from None
    if not 1 <= len(channels) <= MAX_BLOCKS or min(channels) < 1:
        raise ValueError(f"{value!r} must be 1 to {MAX_BLOCKS} positive channel counts")
    return channels


@attrs.frozen
class CnnOptions:
    channels: tuple[int, ...] = option((32, 64), converter=to_channels,
                                       help=f"comma-separated output channels of 1 to {MAX_BLOCKS} conv blocks, e.g. 32,64")


mnist_trainer_options = options_hook(CnnOptions)


@hookimpl
def mnist_trainer_model(options):
    channels = options.channels
    side = SIDE // 2 ** len(channels)
    features = channels[-1] * side * side

    def build(slots):
        layers, previous = [nn.Unflatten(1, (1, SIDE, SIDE))], 1
        for width in channels:
            norms = slots.norm2d(width)  # a norm's shift replaces the convolution's bias
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=not norms), *norms, slots.activation(), nn.MaxPool2d(2)]
            previous = width
        return nn.Sequential(*layers, nn.Flatten(), *slots.dropout(), nn.Linear(features, CLASSES))

    blocks = ", ".join(str(width) for width in channels)
    summary = (f"CNN, {len(channels)} blocks: Conv2d 3x3 ({blocks} channels) -> {{norm}} -> {{activation}} -> MaxPool2d 2x2; "
               f"then {{dropout}} -> Linear({features}, {CLASSES})")
    return Model(summary, build, uses=("activation", "norm2d", "dropout"), kind="cnn", layout="channels_last")

"""The course's Lab 11 convolutional network in the model stage, its blocks filled by the slot plugins.

Each block is a 3x3 convolution (padding 1) -> norm slot (2-d) -> activation slot ->
2x2 max-pool, halving the image; after the last, the dropout slot and a Linear to the
classes. The image shape and the classes are the data's. With the default 32 and 64
channels, ReLU and MNIST this is Lab 11's network.
"""

import attrs
from torch import nn

from mnist_trainer import Model, UserError, hookimpl, option, options_hook

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
                                       help=f"comma-separated output channels of 1 to {MAX_BLOCKS} conv blocks, "
                                            "e.g. 32,64")


mnist_trainer_options = options_hook(CnnOptions)


@hookimpl
def mnist_trainer_model(options, data):
    channels = options.channels
    depth, height, width = data.shape
    height, width = height // 2 ** len(channels), width // 2 ** len(channels)
    if min(height, width) < 1:
        raise UserError(f"-o cnn.channels={','.join(map(str, channels))}: {len(channels)} blocks halve "
                        f"{data.shape[1]}x{data.shape[2]} images to nothing; give fewer channel counts")
    features = channels[-1] * height * width

    def build(slots):
        layers, previous = [nn.Unflatten(1, data.shape)], depth
        for width in channels:
            norms = slots.norm2d(width)  # a norm's shift replaces the convolution's bias
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=not norms), *norms, slots.activation(),
                       nn.MaxPool2d(2)]
            previous = width
        return nn.Sequential(*layers, nn.Flatten(), *slots.dropout(), nn.Linear(features, data.classes))

    blocks = ", ".join(str(width) for width in channels)
    summary = (f"CNN, {len(channels)} blocks: Conv2d 3x3 ({blocks} channels) -> {{norm}} -> {{activation}} -> "
               f"MaxPool2d 2x2; then {{dropout}} -> Linear({features}, {data.classes})")
    return Model(summary, build, uses=("activation", "norm2d", "dropout"), kind="cnn", layout="channels_last")

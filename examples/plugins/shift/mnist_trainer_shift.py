"""Random whole-pixel translation of every training image, a cheap augmentation for MNIST digits.

Each image moves by its own (dx, dy), each uniform in [-pixels, pixels], and the vacated border
is background (0). It runs on the device as one pad and one gather per mini-batch, with no
per-image Python, so it costs the epoch little; the core never applies it to evaluation data.
"""

import attrs
import torch
import torch.nn.functional as F
from attrs.validators import ge, le

from mnist_trainer import Regularizer, UserError, hookimpl, option, options_hook

SIDE = 28


@attrs.frozen
class ShiftOptions:
    pixels: int = option(2, converter=int, validator=[ge(1), le(SIDE - 1)],
                         help=f"a whole number of pixels, 1 to {SIDE - 1}")


mnist_trainer_options = options_hook(ShiftOptions)


def shift(images, pixels, generator, shape=(1, SIDE, SIDE)):
    """`images` (N, C*H*W rows of `shape`) each translated by its own offset drawn from `generator`, zero-filled."""
    count, device = images.shape[0], images.device
    _, height, width = shape
    dx, dy = torch.randint(-pixels, pixels + 1, (2, count), generator=generator, device=device)
    padded = F.pad(images.reshape(count, *shape), (pixels,) * 4)
    # windows[i, :, r, c] views the HxW window of image i whose top-left corner is padded pixel (r, c):
    # the window at (pixels - dy, pixels - dx) shows the image moved down by dy and right by dx
    windows = padded.unfold(2, height, 1).unfold(3, width, 1)
    return windows[torch.arange(count, device=device), :, pixels - dy, pixels - dx].reshape(count, -1)


@hookimpl
def mnist_trainer_regularizer(options, data):
    pixels = options.pixels
    if pixels >= min(data.shape[1:]):
        raise UserError(f"-o shift.pixels={pixels} would move {data.shape[1]}x{data.shape[2]} images out of view; give "
                        f"fewer than {min(data.shape[1:])}")
    return Regularizer(
        f"random shift by up to {pixels} px in x and y, zero fill (training batches)",
        transform=lambda images, labels, generator: (shift(images, pixels, generator, data.shape), labels),
    )

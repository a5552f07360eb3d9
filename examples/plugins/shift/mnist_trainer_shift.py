"""Random whole-pixel translation of every training image, a cheap augmentation for MNIST digits.

Each image moves by its own (dx, dy), each uniform in [-pixels, pixels], and the vacated border
is background (0). It runs on the device as one pad and one gather per mini-batch, with no
per-image Python, so it costs the epoch little; the core never applies it to evaluation data.
"""

import attrs
import torch
import torch.nn.functional as F
from attrs.validators import ge, le

from mnist_trainer import Regularizer, hookimpl, option, options_hook

SIDE = 28


@attrs.frozen
class ShiftOptions:
    pixels: int = option(2, converter=int, validator=[ge(1), le(SIDE - 1)], help=f"a whole number of pixels, 1 to {SIDE - 1}")


mnist_trainer_options = options_hook(ShiftOptions)


def shift(images, pixels, generator):
    """`images` (N, 784) each translated by its own offset drawn from `generator`, zero-filled."""
    count, device = images.shape[0], images.device
    dx, dy = torch.randint(-pixels, pixels + 1, (2, count), generator=generator, device=device)
    padded = F.pad(images.reshape(count, SIDE, SIDE), (pixels,) * 4)
    # windows[i, r, c] views the 28x28 window of image i whose top-left corner is padded pixel (r, c):
    # the window at (pixels - dy, pixels - dx) shows the digit moved down by dy and right by dx
    windows = padded.unfold(1, SIDE, 1).unfold(2, SIDE, 1)
    return windows[torch.arange(count, device=device), pixels - dy, pixels - dx].reshape(count, SIDE * SIDE)


@hookimpl
def mnist_trainer_regularizer(options):
    pixels = options.pixels
    return Regularizer(
        f"random shift by up to {pixels} px in x and y, zero fill (training batches)",
        transform=lambda images, labels, generator: (shift(images, pixels, generator), labels),
    )

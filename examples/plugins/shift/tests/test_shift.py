"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import collections
import itertools

import pytest
import torch

import mnist_trainer_shift as shift
from mnist_trainer import testing


def transform_of(manager, settings):
    """The shift transform as the core composes it (guarded, named)."""
    (name, regularizer), = testing.compose(manager, settings).regularizers
    assert name == "shift" and regularizer.penalty is None and regularizer.dropout is None
    return regularizer.transform


def reference(images, dx, dy):
    """`images` (N, 784) moved right by dx and down by dy with slicing, zero-filled."""
    square, moved = images.view(-1, 28, 28), torch.zeros(images.shape[0], 28, 28, dtype=images.dtype)
    moved[:, max(dy, 0) : 28 + min(dy, 0), max(dx, 0) : 28 + min(dx, 0)] = \
        square[:, max(-dy, 0) : 28 - max(dy, 0), max(-dx, 0) : 28 - max(dx, 0)]
    return moved.view(-1, 784)


def offsets_of(images, shifted, search):
    """Per image, every (dx, dy) with |dx|, |dy| <= search whose reference shift equals the output."""
    found = [[] for _ in range(images.shape[0])]
    for dx, dy in itertools.product(range(-search, search + 1), repeat=2):
        for index in torch.nonzero(torch.all(reference(images, dx, dy) == shifted, dim=1)).flatten().tolist():
            found[index].append((dx, dy))
    return found


@pytest.mark.parametrize("pixels", [1, 2, 3])
def test_each_image_is_shifted_within_bound_and_offsets_are_uniform(mnist_manager, mnist_settings, pixels):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3000, 784, generator=generator)  # noise: exactly one offset reproduces each output
    labels = torch.randint(0, 10, (3000,), generator=generator)
    transform = transform_of(mnist_manager(shift), mnist_settings(shift.ShiftOptions(pixels=pixels)))
    shifted, same_labels = transform(images, labels, torch.Generator().manual_seed(1))
    found = offsets_of(images, shifted, search=pixels + 2)
    assert all(len(offsets) == 1 for offsets in found)
    counts = collections.Counter(offsets[0] for offsets in found)
    assert set(counts) == set(itertools.product(range(-pixels, pixels + 1), repeat=2))
    expected = len(images) / len(counts)  # (dx, dy) uniform over the square
    assert all(0.6 * expected < count < 1.4 * expected for count in counts.values())
    assert torch.equal(same_labels, labels)


def test_real_digits_keep_shape_dtype_and_labels_and_are_shifted_copies(mnist_manager, mnist_settings):
    digits = testing.sample_images(200)
    labels = torch.arange(200) % 10
    transform = transform_of(mnist_manager(shift), mnist_settings())
    shifted, same_labels = transform(digits, labels, torch.Generator().manual_seed(2))
    assert shifted.shape == digits.shape and shifted.dtype == digits.dtype == torch.float32
    assert torch.equal(same_labels, labels)
    assert all(offsets_of(digits, shifted, search=2))  # default pixels=2
    assert not torch.equal(shifted, digits)


def test_same_seed_same_output_and_the_global_rng_plays_no_part(mnist_manager, mnist_settings, mnist_data):
    images, labels = mnist_data.train.images[:500], mnist_data.train.labels[:500]
    transform = transform_of(mnist_manager(shift), mnist_settings())
    torch.manual_seed(0)
    first, _ = transform(images, labels, torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    again, _ = transform(images, labels, torch.Generator().manual_seed(5))
    other, _ = transform(images, labels, torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_a_run_leaves_evaluation_data_alone(mnist_manager, mnist_settings, mnist_data):
    manager, settings = mnist_manager(shift), mnist_settings(epochs=2)
    test_images, train_images = mnist_data.test.images.clone(), mnist_data.train.images.clone()
    run = testing.fit(manager, settings, mnist_data)
    assert torch.equal(mnist_data.test.images, test_images) and torch.equal(mnist_data.train.images, train_images)
    untouched = testing.evaluate(manager, run.network, mnist_data.test, settings)
    assert run.history[-1]["test_accuracy"] == untouched["accuracy"]
    assert run.history[-1]["test_loss"] == untouched["loss"]


def test_options_are_checked():
    with pytest.raises(ValueError):
        shift.ShiftOptions(pixels="0")
    with pytest.raises(ValueError):
        shift.ShiftOptions(pixels="1.5")
    with pytest.raises(ValueError):
        shift.ShiftOptions(pixels="28")  # the whole image would move out
    assert shift.ShiftOptions(pixels="3").pixels == 3 and shift.ShiftOptions(pixels="27").pixels == 27


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(shift)]

"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs.

On the fixtures' data the core's sigmoid MLP sees global gradient norms of about 0.65 to 1.8 in
its first two epochs, so the default max_norm=1 clips most steps but not all.
"""

import math

import pytest
import torch

import mnist_trainer_grad_clip as grad_clip
from mnist_trainer import UserError, hookimpl, testing
from mnist_trainer.testing import build_options


class Gradients:
    """Every step's gradients as the optimizer will step with them: after grad-clip's handler (trylast)."""

    def __init__(self):
        self.seen = []

    @hookimpl(trylast=True)
    def mnist_trainer_before_step(self, run):
        self.seen.append(torch.cat([p.grad.flatten() for p in run.network.parameters()]).clone())


class GradientsBefore(Gradients):
    """Every step's gradients as backward() left them: before grad-clip's handler (tryfirst)."""

    @hookimpl(tryfirst=True)
    def mnist_trainer_before_step(self, run):
        super().mnist_trainer_before_step(run)


def fit(manager, settings, data):
    """The run, with the gradients before and after clipping."""
    before, after = GradientsBefore(), Gradients()
    run = testing.fit(manager, settings, data, listeners=(before, after))
    return run, before.seen, after.seen


def test_the_global_norm_after_clipping_is_at_most_max_norm(mnist_manager, mnist_settings, mnist_data):
    _, _, unclipped = fit(mnist_manager(), mnist_settings(epochs=2), mnist_data)
    norms = torch.stack([g.norm() for g in unclipped])
    assert len(norms) == 24 and (norms > 1.0).sum() >= 12  # without the plugin, most steps are above max_norm
    _, before_clipping, clipped = fit(mnist_manager(grad_clip), mnist_settings(grad_clip.GradClipOptions(max_norm=1.0),
                                                                                 epochs=2), mnist_data)
    for before, after in zip(before_clipping, clipped, strict=True):
        norm = before.norm()
        assert after.norm() <= 1.0
        # the same direction, scaled by max_norm / norm (torch adds 1e-6 to the norm); untouched below max_norm
        expected = before * (1.0 / (norm + 1e-6)) if norm > 1.0 else before
        torch.testing.assert_close(after, expected, rtol=1e-6, atol=1e-9)
    assert sum(g.norm() > 1.0 for g in before_clipping) >= 12


def test_the_row_says_how_large_the_norm_was_and_how_often_it_was_clipped(mnist_manager, mnist_settings, mnist_data):
    options = grad_clip.GradClipOptions(max_norm=1.2)
    run, before, _ = fit(mnist_manager(grad_clip), mnist_settings(options, epochs=2), mnist_data)
    norms = torch.stack([g.norm() for g in before]).view(2, run.steps_per_epoch)
    assert [row["grad_norm"] for row in run.history] == pytest.approx(norms.mean(1).tolist(), rel=1e-5)
    fractions = (norms > 1.2).double().mean(1).tolist()
    assert [row["clipped"] for row in run.history] == pytest.approx(fractions, abs=1e-7)
    assert 0 < fractions[0] < 1  # some steps clipped, some not: the counts are not trivially all or none


def test_the_infinity_norm_bounds_every_gradient_entry(mnist_manager, mnist_settings, mnist_data):
    options = grad_clip.GradClipOptions(max_norm=0.01, norm_type=math.inf)
    _, before, after = fit(mnist_manager(grad_clip), mnist_settings(options, epochs=1), mnist_data)
    assert max(g.abs().max().item() for g in before) > 0.01
    assert max(g.abs().max().item() for g in after) <= 0.01


def test_options_arrive_as_strings():
    assert build_options("grad-clip", grad_clip.GradClipOptions, {"max_norm": "0.5", "norm_type": "inf"}) == (
        grad_clip.GradClipOptions(max_norm=0.5, norm_type=math.inf))
    assert build_options("grad-clip", grad_clip.GradClipOptions, {"norm_type": "1"}).norm_type == 1.0


@pytest.mark.parametrize("key, value", [("max_norm", "0"), ("max_norm", "-1"), ("max_norm", "inf"), ("max_norm", "big"),
                                        ("norm_type", "0.5"), ("norm_type", "-inf"), ("norm_type", "nan")])
def test_bad_values_are_refused_in_one_line_naming_the_option(key, value):
    with pytest.raises(UserError, match=f"invalid value for -o grad-clip.{key}={value}") as raised:
        build_options("grad-clip", grad_clip.GradClipOptions, {key: value})
    assert "\n" not in raised.value.message


def test_it_keeps_the_plugin_contract():
    checks = testing.check_plugin(grad_clip, options={"max_norm": "0.5", "norm_type": "inf"})
    assert {"resumes bitwise", "state on the run's device"} <= {check.property for check in checks}

"""The loop's plain parts as stage answers feed them: schedules, batch transforms, loss-aware penalties, the test
kit."""

import pytest
import torch

import mnist_trainer_relu
from mnist_trainer import Regularizer, Schedule, hookimpl, testing

SETTINGS = testing.settings(epochs=3, batch_size=100, hidden=(16,), lr=0.01)  # 600 images: 6 steps per epoch


def halving(per: str, built: dict):
    class Halving:
        """lr / (1 + i) after i scheduler steps."""

        @hookimpl
        def mnist_trainer_schedule(self, settings):
            def build(optimizer, steps_per_epoch, epochs):
                built.update(steps_per_epoch=steps_per_epoch, epochs=epochs)
                return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 / (1 + i))

            return Schedule("1/(1+i)", build, per=per)

    return Halving()


@pytest.mark.parametrize("per, steps_between_epochs", [("epoch", 1), ("batch", 6)])
def test_the_core_steps_the_schedule_and_records_the_rate_of_each_epoch(per, steps_between_epochs):
    built = {}
    run = testing.fit(testing.plugin_manager(sched=halving(per, built)), SETTINGS)
    assert built == {"steps_per_epoch": 6, "epochs": 3}
    expected = [0.01 / (1 + steps_between_epochs * (epoch - 1)) for epoch in (1, 2, 3)]
    assert [row["lr"] for row in run.history] == pytest.approx(expected, rel=1e-12)
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / (1 + 3 * steps_between_epochs), rel=1e-12)


def test_without_a_schedule_the_rate_is_constant():
    run = testing.fit(testing.plugin_manager(), SETTINGS)
    assert [row["lr"] for row in run.history] == [0.01] * 3


def transform_plugin(name: str, calls: list, change=lambda images: images):
    class Transform:
        @hookimpl
        def mnist_trainer_regularizer(self, settings):
            def transform(images, labels, generator):
                calls.append((name, images.shape, torch.rand((), generator=generator).item()))
                return change(images), labels

            return Regularizer(f"transform {name}", transform=transform)

    return Transform()


def test_transforms_chain_in_plugin_name_order_on_training_batches_only():
    calls = []
    data = testing.tiny_data()
    before = data.train.images.clone(), data.test.images.clone()
    manager = testing.plugin_manager(**{"b-late": transform_plugin("b", calls, lambda images: images.zero_()),
                                        "a-early": transform_plugin("a", calls)})
    testing.fit(manager, SETTINGS, data)
    assert [name for name, _, _ in calls] == ["a", "b"] * 18  # 3 epochs of 6 steps, never during evaluation
    assert all(shape == (100, 784) for _, shape, _ in calls)
    assert torch.equal(data.train.images, before[0]) and torch.equal(data.test.images, before[1])  # batches are copies


def test_a_transform_draws_from_its_own_seeded_generator_and_leaves_the_shuffle_alone():
    plain = testing.fit(testing.plugin_manager(), SETTINGS)
    draws = []
    drawing = testing.fit(testing.plugin_manager(t=transform_plugin("t", draws)), SETTINGS)
    again = []
    testing.fit(testing.plugin_manager(t=transform_plugin("t", again)), SETTINGS)
    assert [row["train_loss"] for row in drawing.history] == [row["train_loss"] for row in plain.history]
    assert draws == again and len(set(d for _, _, d in draws)) == len(draws)


class ConstantPenalty:
    """Adds 0.25 to every mini-batch's loss, after checking it was given this batch's logits and labels."""

    @hookimpl
    def mnist_trainer_regularizer(self, settings):
        def penalty(network, logits, labels):
            assert logits.shape == (labels.shape[0], 10) and logits.requires_grad and labels.dtype == torch.int64
            return torch.tensor(0.25)

        return Regularizer("constant 0.25", penalty=penalty)


def test_penalties_see_logits_and_labels_and_add_to_the_loss():
    plain = testing.fit(testing.plugin_manager(), SETTINGS)
    penalised = testing.fit(testing.plugin_manager(constant=ConstantPenalty()), SETTINGS)
    for base, other in zip(plain.history, penalised.history):
        assert other["train_loss"] == pytest.approx(base["train_loss"] + 0.25, abs=1e-5)
        assert other["test_accuracy"] == base["test_accuracy"]  # a constant moves no gradient


def test_the_test_kit_names_options_and_evaluates_as_a_run_does():
    manager = testing.plugin_manager(mnist_trainer_relu)
    assert manager.has_plugin("relu")  # the entry-point name a run registers it under
    leaky = testing.compose(manager, testing.settings(mnist_trainer_relu.ReluOptions(negative_slope=0.1)))
    assert (leaky.activation == ("relu", leaky.activation[1])
            and "LeakyReLU(negative_slope=0.1)" in leaky.activation[1].summary)
    data = testing.tiny_data()
    run = testing.fit(manager, SETTINGS, data)
    final = testing.evaluate(manager, run.network, data.test, SETTINGS)
    assert final == {"loss": run.history[-1]["test_loss"], "accuracy": run.history[-1]["test_accuracy"]}

import attrs
import pytest
from attrs.validators import ge

from mnist_trainer import UserError, boolean, choice, option
from mnist_trainer.options import build_options, parse_assignments
from mnist_trainer.settings import Settings, parse_hidden


@attrs.frozen
class Opts:
    rate: float = option(0.5, converter=float, validator=ge(0.0), help="a number >= 0")
    mode: str = option("uniform", converter=choice("uniform", "normal"), help="uniform or normal")


def test_assignments_group_by_plugin():
    assert parse_assignments(["a.x=1", "a.y = 2", "b.z=c=d"]) == {"a": {"x": "1", "y": "2"}, "b": {"z": "c=d"}}


@pytest.mark.parametrize("text", ["a.x", "x=1", ".x=1", "a.=1", "=1"])
def test_malformed_assignment_says_the_syntax(text):
    with pytest.raises(UserError, match="NAME.KEY=VALUE"):
        parse_assignments([text])


def test_options_are_converted_and_validated():
    assert build_options("p", Opts, {"rate": "0.25", "mode": "normal"}) == Opts(0.25, "normal")
    assert build_options("p", Opts, {}) == Opts()


@pytest.mark.parametrize(
    "values, words",
    [
        ({"speed": "1"}, ["unknown option p.speed", "p.rate (a number >= 0)"]),
        ({"rate": "abc"}, ["-o p.rate=abc", "accepted: a number >= 0"]),
        ({"rate": "-1"}, ["-o p.rate=-1", "must be >= 0"]),
        ({"rate": "1", "mode": "sideways"}, ["-o p.mode=sideways", "uniform, normal"]),
    ],
)
def test_option_errors_name_the_option_and_accepted_values(values, words):
    with pytest.raises(UserError) as caught:
        build_options("p", Opts, values)
    for word in words:
        assert word in caught.value.message


def linked(default_momentum: float) -> type:
    @attrs.frozen
    class Linked:
        momentum: float = option(default_momentum, converter=float, help="a number")
        nesterov: bool = option(False, converter=boolean, help="true or false; true needs momentum above 0")

        def __attrs_post_init__(self):
            if self.nesterov and not self.momentum > 0:
                raise ValueError("nesterov=true needs momentum above 0")

    return Linked


def test_options_that_depend_on_each_other_are_judged_together():
    zero = linked(0.0)  # nesterov=true alone fails with this default, yet is fine beside a momentum
    assert build_options("p", zero, {"nesterov": "true", "momentum": "0.9"}) == zero(0.9, True)
    with pytest.raises(UserError,
                       match=r"invalid value for -o p.nesterov=true: nesterov=true needs momentum above 0 \(accepted"):
        build_options("p", zero, {"nesterov": "true"})
    half = linked(0.5)  # each value alone is fine with this default; only the pair is wrong
    with pytest.raises(UserError, match="^invalid options for p: nesterov=true needs momentum above 0$"):
        build_options("p", half, {"nesterov": "true", "momentum": "0"})


def test_plugin_without_options_rejects_one():
    with pytest.raises(UserError, match="takes no options"):
        build_options("p", None, {"x": "1"})


def test_settings_find_options_by_class_and_default_them():
    settings = Settings(plugin_options=(("p", Opts(rate=2.0)),))
    assert settings.options(Opts).rate == 2.0
    assert Settings().options(Opts) == Opts()
    assert settings.options_dict() == {"p": {"rate": 2.0, "mode": "uniform"}}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.epochs = 3


@pytest.mark.parametrize("text, widths", [("256,256", (256, 256)), ("10", (10,)), ("64, 32,16", (64, 32, 16))])
def test_hidden_widths(text, widths):
    assert parse_hidden(text) == widths


@pytest.mark.parametrize("text", ["256,,x", "0", "", "-3", "a"])
def test_bad_hidden_widths(text):
    with pytest.raises(UserError, match="--hidden"):
        parse_hidden(text)

import attrs
import pytest
from attrs.validators import ge

from mnist_trainer import UserError, choice, option
from mnist_trainer.settings import Settings, build_options, parse_assignments, parse_hidden


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

"""docs/plugin_hooks.md documents exactly the hooks in hookspecs.py (signatures, kinds, composition rules) and every
field of every answer in stages.py."""

import inspect
import re
from pathlib import Path

import attrs

from mnist_trainer import hookspecs, stages

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"


def sections() -> dict[str, str]:
    """Each ``## hook(args)`` heading's text, up to the next heading, as one line."""
    parts = re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]
    return {part.split("\n", 1)[0]: " ".join(part.split("\n", 1)[1].split()) for part in parts}


def specs() -> dict[str, str]:
    return {name: f"{name}({', '.join(inspect.signature(function).parameters)})"
            for name, function in vars(hookspecs).items() if name.startswith("mnist_trainer_")}


def test_every_hook_has_a_section_with_its_exact_signature():
    headings = [heading for heading in sections() if heading.startswith("mnist_trainer_")]
    assert sorted(headings) == sorted(specs().values())


def test_stage_hook_sections_and_docstrings_quote_the_one_declaration_of_their_rule():
    text = sections()
    for hook, stage in hookspecs.STAGES.items():
        assert stage.rule in text[specs()[hook]], hook
        assert stage.rule in " ".join(getattr(hookspecs, hook).__doc__.split()), hook


def test_run_event_sections_say_so_and_no_stage_hook_is_an_event():
    text = sections()
    assert set(hookspecs.EVENTS).isdisjoint(hookspecs.STAGES)
    for event in hookspecs.EVENTS:
        assert text[specs()[event]].startswith("Run event"), event


def written(value) -> str:
    """A default as the docs write it: strings in double quotes."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(map(written, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def signature(cls) -> str:
    """``Norm(summary, build, build2d=None, min_batch=1, sync=None)``: the answer's constructor, every field."""
    fields = [field.name if field.default is attrs.NOTHING else f"{field.name}={written(field.default)}"
              for field in attrs.fields(cls)]
    return f"{cls.__name__}({', '.join(fields)})"


def test_every_answer_is_documented_with_every_field_in_its_hooks_section():
    text = sections()
    for hook, stage in hookspecs.STAGES.items():
        assert signature(stage.answer) in text[specs()[hook]], hook
    init = text[specs()["mnist_trainer_init"]]
    assert all(f"context.{field.name}" in init for field in attrs.fields(stages.InitContext))

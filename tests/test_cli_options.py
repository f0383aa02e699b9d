"""Every option of every subcommand has help text, and its choices and defaults come from the library.

The choices are checked by changing the library's table (``mask.EFFECTS``, ``pipeline.PRESETS``,
``formats``) and building the parsers again: a list written out in the CLI would not follow.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from typing import get_args

import pytest

from blurface import formats, mask
from blurface.cli.common import DEFAULT_SPEED, who_from_args
from blurface.cli.main import COMMANDS, main
from blurface.embedders import DEFAULT_EMBEDDER, EMBEDDERS
from blurface.pipeline import PRESETS, RenderSettings


def options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    return (a for a in parser._actions if a.option_strings)


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in options(parser) if flag in a.option_strings), None)


def parsers_with(flag: str) -> dict[str, argparse.Action]:
    found = {name: option(command.add_parser(), flag) for name, command in COMMANDS.items()}
    return {name: action for name, action in found.items() if action is not None}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_argument_has_help(name: str) -> None:
    parser = COMMANDS[name].add_parser()
    missing = [a.option_strings or [a.dest] for a in parser._actions if not a.help or a.help == argparse.SUPPRESS]
    assert missing == [], f"blurface {name}: no help text for {missing}"


def test_mask_choices_follow_mask_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(mask.EFFECTS, "sparkle", mask.Blur)
    found = parsers_with("--mask")
    assert set(found) == {"blur", "render", "preview", "batch", "review"}
    for name, action in found.items():
        assert tuple(action.choices) == tuple(mask.EFFECTS), name
        assert action.default == RenderSettings().effect, name


def test_shape_and_codec_choices_follow_the_library() -> None:
    for name, action in parsers_with("--shape").items():
        assert tuple(action.choices) == get_args(mask.Shape), name
        assert action.default == RenderSettings().shape, name
    codecs = parsers_with("--codec")
    assert set(codecs) == {"blur", "render", "batch"}
    for name, action in codecs.items():
        assert tuple(action.choices) == tuple(formats.CODEC_CHOICES), name
    for name, action in parsers_with("--embedder").items():
        assert tuple(action.choices) == tuple(EMBEDDERS) and action.default == DEFAULT_EMBEDDER, name


def test_pad_crf_and_preset_help_give_the_library_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mask, "DEFAULT_PAD", 0.25)
    monkeypatch.setattr(formats, "DEFAULT_PRESET", "medium")
    monkeypatch.setitem(formats.DEFAULT_CRF, "libx264", 21)
    for name, action in parsers_with("--pad").items():
        assert action.default is None and "(default 0.25)" in action.help, name
    presets = parsers_with("--preset")
    assert set(presets) == {"blur", "render", "batch"}
    for name, action in presets.items():
        assert "(default medium)" in action.help, name
        assert "(default 21)" in option(COMMANDS[name].add_parser(), "--crf").help, name


def test_preset_is_checked_against_the_x264_presets_of_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["x.mp4", "--all", "--preset", "sparkly"]) == 2
    assert capsys.readouterr().err.strip().endswith("use one of " + ", ".join(formats.X264_PRESETS))


def test_speed_flags_follow_the_analysis_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PRESETS, "fast", dataclasses.replace(PRESETS["fast"], min_face=1 / 30))
    flags = {f"--{name}" for name in PRESETS if name != DEFAULT_SPEED}
    for name, command in COMMANDS.items():
        parser = command.add_parser()
        present = {flag for a in options(parser) for flag in a.option_strings if flag[2:] in PRESETS}
        assert present in (set(), flags), name
        if present:
            assert "1/30 of the frame height (24 px at 720p)" in option(parser, "--fast").help, name
    assert {name for name, command in COMMANDS.items() if option(command.add_parser(), "--fast")} == {
        "blur", "preview", "batch", "review"}


def test_tolerance_default_is_the_embedders_own() -> None:
    found = parsers_with("--tolerance")
    assert set(found) == {"blur", "verify", "preview", "batch", "review", "people"}
    for name, action in found.items():
        assert action.default is None, name  # None: the library takes the embedder's tolerance


@pytest.mark.parametrize(("given", "plan", "chosen"), [
    (dict(target=["a.jpg"]), False, "target"),
    (dict(keep=["a.jpg", "b.jpg"]), False, "keep"),
    (dict(all=True), False, "all"),
    (dict(plan="p.json"), True, "plan"),
])
def test_who_from_args_names_the_one_choice(given: dict, plan: bool, chosen: str) -> None:
    args = argparse.Namespace(**{"target": [], "keep": [], "all": False, "plan": None, **given})
    who = who_from_args(args, plan=plan)
    assert (who.mode if who is not None else "plan") == chosen


@pytest.mark.parametrize(("argv", "message"), [
    (["x.mp4"], "blurface: give exactly one of --target, --keep or --all (see --help)"),
    (["x.mp4", "--all", "--keep", "a.jpg"], "blurface: give exactly one of --target, --keep or --all (see --help)"),
    (["batch", "a", "-o", "b", "--all", "--target", "a.jpg"],
     "blurface: give exactly one of --target, --keep or --all (see --help)"),
    (["preview", "x.mp4", "--all", "--plan", "p.json"],
     "blurface preview: give exactly one of --target, --keep, --all or --plan (see --help)"),
    (["review", "x.mp4"], "blurface review: give exactly one of --target, --keep, --all or --plan (see --help)"),
    # On the main command --plan is an output: it is no fourth choice there.
    (["x.mp4", "--plan", "p.json"], "blurface: give exactly one of --target, --keep or --all (see --help)"),
])
def test_exactly_one_of_whom_to_mask(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"

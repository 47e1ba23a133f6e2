"""The command line explains itself: every subcommand listed with one line of help, every option with
help text (choices and defaults shown), and --version."""

import argparse

import pytest

import benchmark
from benchmark.cli import main


def _parser():
    """The CLI's parser, captured as main() builds it."""
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        captured.setdefault("parser", self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            main(["--help"])
    finally:
        argparse.ArgumentParser.parse_args = original
    return captured["parser"]


def test_help_lists_every_subcommand_with_a_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) >= 10
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name in sub.choices:
        assert name in text and helps.get(name), name


def test_every_option_has_help_and_shows_its_default(capsys):
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        text = parser.format_help()
        for action in parser._actions:
            if action.choices and action.option_strings:
                assert "{" + ",".join(action.choices) + "}" in text, (name, action.dest)
    run = sub.choices["run"].format_help()
    assert "--algorithm {alg1,alg2}" in run and "(default: 1.0)" in run  # eta
    assert "one of: none, naive, gloss" in run  # the method registry's names


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and benchmark.__version__ in capsys.readouterr().out

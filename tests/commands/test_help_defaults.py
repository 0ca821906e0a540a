"""Every option's help states its default at most once, and never as "(default: None)" or
"(default: False)" (issue 18: train --help printed "(default: runs/…) (default: None)")."""

from __future__ import annotations

import argparse
import re

from medseg.cli import HelpFormatter, build_parser


def _parsers(parser: argparse.ArgumentParser, name: str = "medseg"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for key, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {key}")


def _option_helps():
    for name, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS):
                continue
            text = " ".join(formatter._expand_help(action).split())
            yield name, "/".join(action.option_strings) or action.dest, text


def test_one_default_per_option():
    for name, option, text in _option_helps():
        assert len(re.findall(r"\(default[:)]", text)) <= 1, (name, option, text)
        assert "(default: None)" not in text and "(default: False)" not in text, (name, option, text)


def test_train_out_shows_its_default_once():
    helps = {(n, o): t for n, o, t in _option_helps()}
    assert helps[("medseg train", "--out")] == \
        "run folder (default: runs/<dataset>_<model>_<regularizer>_seed<seed>)"


def test_useful_defaults_are_still_shown():
    helps = {(n, o): t for n, o, t in _option_helps()}
    assert helps[("medseg data synth pancreas", "--cases")].endswith("(default: 12)")
    assert helps[("medseg predict", "--mc-samples")].endswith("(default: 0)")  # 0 is not False


def test_the_formatter_is_the_one_every_command_uses():
    for name, parser in _parsers(build_parser()):
        assert issubclass(parser.formatter_class, HelpFormatter), name

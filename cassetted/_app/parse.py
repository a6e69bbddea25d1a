"""`cassetted parse TEXT`: show what the intent parser makes of a sentence, offline.

For trying phrasings and room aliases against the real configuration without a broker:
the JSON printed is exactly what a voice request would be turned into (null where the
sentence did not say), plus the warnings a person would otherwise never see.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cassetted import config
from cassetted.voice import intent


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the `parse` subcommand; `common` brings --config."""
    parser = subparsers.add_parser(
        "parse", parents=[common], help="parse a spoken request into a song request (JSON)",
        description="Parse TEXT with the rule-based intent parser and print the result as JSON.")
    parser.add_argument("text", metavar="TEXT", nargs="+", help="the sentence (quotes optional)")
    parser.add_argument("--room", dest="default_room", default=None,
                        help="room id to use when the sentence names none")
    parser.add_argument("--explain", action="store_true",
                        help="also print which words each field came from")
    parser.set_defaults(handler=run)


def result_json(parsed: intent.ParsedIntent, *, explain: bool = False) -> dict[str, Any]:
    """The printed object: intent.FIELDS, then warnings (and evidence and spelling
    corrections with --explain)."""
    out: dict[str, Any] = parsed.as_dict()
    out["warnings"] = list(parsed.warnings)
    if explain:
        out["evidence"] = dict(parsed.evidence)
        out["corrections"] = dict(parsed.corrections)
    return out


def run(args: argparse.Namespace) -> int:
    """Load the settings (for the rooms), parse, print; 2 on a configuration error."""
    try:
        settings = config.load(getattr(args, "config", None))
    except config.ConfigError as error:
        print(f"cassetted: {error}", file=sys.stderr)
        return 2
    text = " ".join(args.text)
    parsed = intent.parse(text, settings.rooms, default_room=args.default_room)
    print(json.dumps(result_json(parsed, explain=args.explain), indent=2, ensure_ascii=False))
    return 0

"""`cassetted keys set|list|delete|rotate`: manage the encrypted API keys of lyrics providers.

A secret is read from stdin (piped) or a hidden prompt, never from the command line, where
`ps` and shell history would show it; `list` shows who has a key for what, never the key.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from cassetted.store.credentials import (
    CredentialError,
    CredentialStore,
    Secret,
    rotate_key_file,
)

if TYPE_CHECKING:
    from cassetted.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add `keys` and its subcommands; each sets `handler`."""
    keys = subparsers.add_parser("keys", help="manage encrypted API keys",
                                 description=__doc__.splitlines()[0])
    actions = keys.add_subparsers(dest="keys_command", metavar="{set,list,delete,rotate}",
                                  required=True)

    set_ = _leaf(actions, "set", common, help="store a key (read from stdin or a prompt)")
    set_.add_argument("provider", help="provider name: openai, ollama or an endpoint name")
    set_.add_argument("--user", help="the user this key belongs to (default: household)")
    set_.set_defaults(handler=cmd_set)

    list_ = _leaf(actions, "list", common, help="show stored keys (never the secret)")
    list_.set_defaults(handler=cmd_list)

    delete = _leaf(actions, "delete", common, help="remove a key")
    delete.add_argument("provider")
    delete.add_argument("--user", help="whose key (default: household)")
    delete.set_defaults(handler=cmd_delete)

    rotate = _leaf(
        actions, "rotate", common,
        help="re-encrypt every key with the first key of $CASSETTED_ENCRYPTION_KEY or the key file")
    rotate.add_argument("--new-key", action="store_true",
                        help="key file only: generate a new key, re-encrypt, drop the old key")
    rotate.set_defaults(handler=cmd_rotate)


def _leaf(actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
          common: argparse.ArgumentParser, help: str) -> argparse.ArgumentParser:
    """Common options live on the leaf subcommands only (`keys list --config X`): were they
    also on `keys`, argparse would reset a value given before the action to the default."""
    return actions.add_parser(name, parents=[common], help=help)


def _open(args: argparse.Namespace) -> tuple[Settings, CredentialStore]:
    from cassetted import config
    from cassetted.store import database as store

    settings = config.load(getattr(args, "config", None))
    url = settings.storage.database_url.get_secret_value() if settings.storage.database_url else None
    store.open_database(url, settings.state_dir)
    return settings, CredentialStore.open(settings.state_dir)


def read_secret(stdin: TextIO | None = None) -> Secret:
    """From a pipe (`echo $KEY | cassetted keys set openai`) or a prompt that does not echo."""
    stdin = stdin or sys.stdin
    value = getpass.getpass("API key (input hidden): ") if stdin.isatty() else stdin.readline()
    return Secret(value.strip())


def _who(user: str | None) -> str:
    return f"user {user}" if user else "household"


def cmd_set(args: argparse.Namespace) -> int:
    try:
        _settings, creds = _open(args)
        secret = read_secret()
        if not secret.reveal():
            print("error: empty key; nothing stored", file=sys.stderr)
            return 2
        creds.set(args.provider, secret, owner=args.user)
    except (CredentialError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"stored {args.provider} key for {_who(args.user)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        _settings, creds = _open(args)
        rows = creds.list()
    except (CredentialError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not rows:
        print("no keys stored")
        return 0
    print(f"{'PROVIDER':<16} {'OWNER':<24} CREATED")
    for row in rows:
        created = datetime.fromtimestamp(row.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{row.provider:<16} {row.owner or '(household)':<24} {created}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    try:
        _settings, creds = _open(args)
        deleted = creds.delete(args.provider, owner=args.user)
    except (CredentialError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not deleted:
        print(f"no {args.provider} key for {_who(args.user)}", file=sys.stderr)
        return 1
    print(f"deleted {args.provider} key for {_who(args.user)}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    try:
        settings, creds = _open(args)
        count = rotate_key_file(settings.state_dir) if args.new_key else creds.rotate()
    except (CredentialError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"re-encrypted {count} key(s) with the current key")
    return 0

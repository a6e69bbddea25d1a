"""`cassetted token <member>`: a member's token, for households that trust no name.

With `[household] trusted_user_field = false` (the default) a `"user"` in a payload proves
nothing; a member proves who they are by their MQTT login or by a `"token"`. This prints a
new token for a `[users.<id>]` member once (only its SHA-256 is stored); the old one stops
working. Put it in the member's phone, Node-RED flow or Home Assistant automation.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    token = subparsers.add_parser("token", parents=[common], help="issue a member's token",
                                  description=__doc__.splitlines()[0])
    token.add_argument("member", help="a [users.<id>] id, e.g. dad")
    token.set_defaults(handler=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    from cassetted import config
    from cassetted.contract import errors
    from cassetted.household import identity
    from cassetted.store import database as store

    try:
        settings = config.load(args.config)
    except config.ConfigError as error:
        print(f"cassetted: {error}", file=sys.stderr)
        return 2
    if args.member not in settings.users:
        known = ", ".join(sorted(settings.users)) or "none"
        print(f"cassetted: no member {args.member!r} in [users] (members: {known})",
              file=sys.stderr)
        return 2
    url = settings.storage.database_url
    db = store.open_database(url.get_secret_value() if url else None, settings.state_dir)
    try:
        with db.atomic():
            identity.sync_members(settings)
            token = identity.issue_token(args.member)
    except errors.CassettedError as error:
        print(f"cassetted: {error.message}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(token)
    return 0

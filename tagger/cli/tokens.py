"""`tagger tokens`: create, list and revoke the API tokens of `tagger serve`."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli.shared import open_sessions, print_json
from tagger.settings import Settings
from tagger.tokens import ROLES


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tokens",
        help="API tokens for `tagger serve`: create (shown once), list, revoke",
        description="Roles, each including those before it: read (jobs, suggestions, images by tag), submit "
        "(queue and steer jobs), review (record accepted and rejected tags), admin. Tokens are stored as "
        "SHA-256 digests: a lost token cannot be shown again, only revoked and replaced.",
    )
    tsub = p.add_subparsers(dest="tokens_command", required=True)
    t = tsub.add_parser("create", help="a new token; prints the secret once, on stdout")
    t.add_argument("name", help="who or what uses it (recorded on the labels it decides)")
    t.add_argument("--role", choices=ROLES, required=True, help="what the token may do: " + " < ".join(ROLES))
    t = tsub.add_parser("list", help="every token with its role and last use, never its secret")
    t.add_argument("--json", action="store_true", help="print JSON")
    t = tsub.add_parser("revoke", help="the named token stops working at once")
    t.add_argument("name")
    p.set_defaults(func=cmd_tokens)


def cmd_tokens(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from tagger import tokens

    sessions = open_sessions(settings)
    if args.tokens_command == "create":
        secret = tokens.create(sessions, args.name, args.role)
        print(f"token {args.name!r} ({args.role}): store it now, it cannot be shown again", file=sys.stderr)
        print(secret)
    elif args.tokens_command == "list":
        rows = [
            {
                "name": t.name,
                "role": t.role,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in tokens.listed(sessions)
        ]
        if args.json:
            print_json(rows)
            return 0
        for r in rows:
            state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "live"
            used = f"last used {r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never used"
            print(f"{r['name']}  {r['role']}  {state}  {used}")
    else:
        tokens.revoke(sessions, args.name)
        print(f"revoked token {args.name!r}")
    return 0

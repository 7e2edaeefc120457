"""Grant (or revoke) the admin flag of an existing user, for operators.

    python scripts/make_admin.py alice@example.com            # make admin
    python scripts/make_admin.py alice@example.com --revoke   # take it away

Reads the same environment as the server (COUCHDB_URL, COUCHDB_USER, ...). Admins may call the
operators' APIs: /api/replication/* and the admin-only GraphQL queries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from config.settings import ConfigError, load_config  # noqa: E402
from notebook.bootstrap import bootstrap  # noqa: E402
from notebook.core.errors import DomainError  # noqa: E402
from notebook.database.couch import CouchError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grant or revoke a user's admin flag.")
    parser.add_argument("email", help="the user's e-mail address")
    parser.add_argument("--revoke", action="store_true", help="remove the admin flag instead")
    args = parser.parse_args(argv)
    try:
        services = bootstrap(load_config(), install_schema=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        user = services.users.get_by_email(args.email.strip().lower())
        if user is None:
            print(f"error: no user with the e-mail address {args.email}", file=sys.stderr)
            return 1
        services.users.set_admin(user.id, not args.revoke)
    except (CouchError, DomainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        services.close()
    print(f"{args.email}: admin {'revoked' if args.revoke else 'granted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

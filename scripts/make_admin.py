"""Grant (or revoke) the admin flag of an existing user: the same as `notebook-server create-admin`.

    python scripts/make_admin.py alice@example.com            # make admin
    python scripts/make_admin.py alice@example.com --revoke   # take it away

Reads the same environment as the server (COUCHDB_URL, COUCHDB_USER, ...). Admins may call the
operators' APIs: /api/replication/* and the admin-only GraphQL queries.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from notebook.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["create-admin", *sys.argv[1:]]))

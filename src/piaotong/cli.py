"""The `piaotong` command: a thin front door to the management commands.

`piaotong serve`, `piaotong demo`, `piaotong issue --from-json FILE`, `piaotong invoices list`
and every Django management command (`piaotong migrate`, `piaotong check`, ...).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "piaotong.settings")
    from django.core.management import execute_from_command_line

    args = list(sys.argv if argv is None else ["piaotong", *argv])
    args[0] = "piaotong"
    execute_from_command_line(args)


if __name__ == "__main__":
    main()

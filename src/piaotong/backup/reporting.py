"""What backup and restore tell the operator: a refusal, progress lines, sizes."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore refused or failed; the message says what was wrong and what to do."""


def human_size(size: float) -> str:
    """
    >>> human_size(512), human_size(372736), human_size(5 << 30)
    ('512 B', '364.0 KiB', '5.0 GiB')
    """
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"

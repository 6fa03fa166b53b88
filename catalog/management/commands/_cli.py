"""What the file-reading commands share: the ``PATH...`` argument and a progress bar."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandParser
from tqdm import tqdm


def add_paths_argument(parser: CommandParser) -> None:
    """The positional ``PATH...`` (one or more files, folders or archives)."""
    parser.add_argument("paths", nargs="+", metavar="PATH")


def progress_bar(*, total: int, unit: str, hidden: bool, desc: str | None = None) -> tqdm[Any]:
    """A bar on standard error (standard output stays machine-readable), gone when done.

    Unless ``hidden``, tqdm decides: it draws only when standard error is a terminal.
    """
    return tqdm(
        total=total, unit=unit, desc=desc, file=sys.stderr, leave=False, disable=hidden or None
    )

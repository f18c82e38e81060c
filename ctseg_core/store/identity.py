"""Who is reading: the reader's name, recorded with every edit, save, status change and training run.

The name is ``$CTSEG_READER`` when set, else the operating system account (``getpass.getuser``); the app
changes it (Review > Reader name..., ``ctseg-app --reader``) and the command line takes ``--reader``.
A name becomes a folder and lock file name through ``reader_slug`` (letters, digits, '-' and '_').
"""

from __future__ import annotations

import getpass
import os
import re

from ctseg_core.errors import StoreError


def os_account() -> str:
    """The operating system account's name ("unknown" when the system cannot tell)."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def default_reader() -> str:
    """``$CTSEG_READER``, else the operating system account."""
    return os.environ.get("CTSEG_READER", "").strip() or os_account()


def reader_slug(name: str) -> str:
    """The reader's name as a file name part ("Dr. Ada Lovelace" -> "Dr-Ada-Lovelace"); StoreError when
    nothing of it is left."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name or "").strip("-")
    if not slug:
        raise StoreError(f"reader name {name!r} has no letters or digits")
    return slug


def check_reader(name: str) -> str:
    """A usable reader name (stripped), or StoreError."""
    name = (name or "").strip()
    reader_slug(name)
    return name

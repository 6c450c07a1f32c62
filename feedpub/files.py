"""The one way feedpub replaces a file: readers (a static server, a feed reader, the next build) see the
old bytes or the new ones, never half a file, even if feedpub is killed mid-write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".feedpub-tmp-"


def write_atomic(target: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `target` and rename it into place. An existing file keeps
    its permissions; a new one gets the usual 0666 less the umask (a web server running as another user
    must read feeds), not mkstemp's 0600."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    # No fsync: os.replace is atomic against a killed process, which is the failure that matters here.
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_if_changed(target: Path, data: bytes) -> bool:
    """`write_atomic` unless `target` already holds `data` (its mtime stays, so servers keep answering 304);
    whether it wrote."""
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(target, data)
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current

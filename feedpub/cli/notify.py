"""What `feedpub run` and `feedpub worker` tell systemd (`Type=notify`): READY=1 once they serve, STATUS=
lines for `systemctl status`, STOPPING=1 at SIGTERM, WATCHDOG=1 while every part of the daemon is alive.

The protocol is one datagram of `NAME=value` lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a
leading "@" is Linux's abstract namespace), as sd_notify(3) describes: a few lines of the standard
library, so no package for it (`sdnotify` on PyPI does the same, unmaintained; `systemd-python` needs
libsystemd's headers to build). Without $NOTIFY_SOCKET (not under systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

log = logging.getLogger("feedpub")


def notify(*lines: str) -> None:
    """Send `lines` (e.g. "READY=1", "STATUS=…") as one message; a manager that went away is logged, never fatal."""
    where = os.environ.get("NOTIFY_SOCKET", "")
    if not where:
        return
    address = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(lines).encode("utf-8"), address)
    except OSError as exc:
        log.warning("NOTIFY_SOCKET %s: cannot tell the service manager %s (%s)", where, lines[0], exc.strerror)


def watchdog_interval() -> timedelta | None:
    """How often to send WATCHDOG=1 (half of the unit's WatchdogSec=, as sd_watchdog_enabled(3) advises), or
    None when no watchdog is asked of this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return timedelta(microseconds=int(usec) / 2)

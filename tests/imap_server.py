"""A real IMAP server for tests: Debian's Dovecot (`dovecot-imapd`) started on 127.0.0.1 on a free port,
with its own throwaway config, one user with a password and a Maildir, plaintext login allowed (it only
listens on localhost). `.ci/run` installs the package; tests ask for the `imap_server` fixture of the
test module that needs it.

    server = DovecotServer().start()
    server.deliver(raw_bytes)                    # APPEND to the user's INBOX, unseen
    server.client()                               # a logged-in IMAPClient
    server.stop()
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"

_CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class DovecotServer:
    host = "127.0.0.1"

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        # Not under pytest's tmp_path: Dovecot's mail processes run as the mail user, who must reach the folder.
        self.root = Path(tempfile.mkdtemp(prefix="feedpub-imap-"))
        self.root.chmod(0o755)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"imap://{USER}@{self.host}:{self.port}/INBOX"

    def start(self) -> DovecotServer:
        # Dovecot never gives mail access to root: as root, the mail user is `nobody`.
        owner = pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        for name in ("run", "state", "mail", "home"):
            (self.root / name).mkdir()
        for name in ("mail", "home"):
            os.chown(self.root / name, owner.pw_uid, owner.pw_gid)
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        (self.root / "dovecot.conf").write_text(_CONFIG.format(root=self.root, port=self.port, uid=owner.pw_uid,
                                                               gid=owner.pw_gid), encoding="utf-8")
        self._process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while self._process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        error = self._process.stderr.read().decode() if self._process.stderr and self._process.poll() else ""
        log = self.root / "dovecot.log"
        raise RuntimeError(f"dovecot did not start: {error} {log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def deliver(self, raw: bytes, *, seen: bool = False) -> None:
        client = self.client()
        try:
            client.append("INBOX", raw, flags=[b"\\Seen"] if seen else [])
        finally:
            client.logout()

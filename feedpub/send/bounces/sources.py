"""Where bounces are read: a local Maildir or mbox (`bounces.mailbox`) and an IMAP folder
(`bounces.imap_url`). Each source only reads what it does not recognise: a message classified as
something other than "not-a-bounce" is moved to `bounces.processed_folder` (created when first needed;
in a Maildir, a Maildir++ sub-folder); anything else stays exactly as it was (an IMAP message keeps its
unseen flag, a Maildir file its place). An mbox is never written: reading a message again records
nothing new.
"""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient

from feedpub.config import Config
from feedpub.errors import FeedpubError
from feedpub.send.bounces.process import Outcome, process_message
from feedpub.store import Store

log = logging.getLogger(__name__)

# Messages fetched from IMAP per round trip.
_FETCH_BATCH = 100


class SourceError(FeedpubError):
    """A mailbox or IMAP server that cannot be read; the message names it."""


@dataclass(frozen=True)
class Read:
    """One message read from a source and what became of it."""

    where: str                   # "mailbox:PATH#KEY", "imap:URL#UID"
    outcomes: tuple[Outcome, ...]
    moved: bool


def poll(config: Config, store: Store, on_read: Callable[[Read], None] = lambda read: None) -> list[Read]:
    """Read every configured source once."""
    reads: list[Read] = []
    for source in (read_mailbox, read_imap):
        for read in source(config, store):
            on_read(read)
            reads.append(read)
    return reads


def read_mailbox(config: Config, store: Store) -> Iterator[Read]:
    """The messages of `bounces.mailbox`: a Maildir (a folder with cur/, new/, tmp/) or an mbox file."""
    if not config.bounces.mailbox:
        return
    path = config.path(config.bounces.mailbox)
    if path.is_dir():
        yield from _read_maildir(config, store, path)
    elif path.is_file():
        yield from _read_mbox(config, store, path)
    else:
        raise SourceError(f"{path}: bounces.mailbox does not exist (expected a Maildir folder or an mbox file)")


def _read_maildir(config: Config, store: Store, path: Path) -> Iterator[Read]:
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise SourceError(f"{path}: bounces.mailbox is a folder but not a Maildir (expected cur/, new/ and tmp/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    processed: Path | None = None
    for key in list(box.iterkeys()):
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):     # another reader took it meanwhile
            continue
        outcomes = tuple(process_message(config, store, raw, f"mailbox:{path}"))
        moved = _recognised(outcomes)
        if moved:
            name = config.bounces.processed_folder
            if processed is None:
                if name not in box.list_folders():
                    box.add_folder(name)
                processed = path / f".{name}"         # Maildir++: a sub-folder is a dot-folder beside cur/
            _move_file(path, key, processed)
        yield Read(f"mailbox:{path}#{key}", outcomes, moved)


def _move_file(path: Path, key: str, folder: Path) -> None:
    """Rename the message file into the same place of `folder`: its bytes, flags and times stay as they were
    (`mailbox` could only copy it, rewriting it)."""
    for place in ("new", "cur"):
        for file in (path / place).iterdir():
            if file.name == key or file.name.startswith(key + ":"):
                file.rename(folder / place / file.name)
                return


def _read_mbox(config: Config, store: Store, path: Path) -> Iterator[Read]:
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            yield Read(f"mailbox:{path}#{key}", tuple(process_message(config, store, raw, f"mailbox:{path}")), False)
    finally:
        box.close()


def read_imap(config: Config, store: Store) -> Iterator[Read]:
    """The unseen messages of `bounces.imap_url`, read without setting their seen flag."""
    if not config.bounces.imap_url:
        return
    url = urlsplit(config.bounces.imap_url)
    port = f":{url.port}" if url.port else ""
    shown = f"{url.scheme}://{url.username}@{url.hostname}{port}{url.path}"   # never a password
    folder = unquote(url.path.lstrip("/")) or "INBOX"
    secure = url.scheme == "imaps"
    try:
        client = IMAPClient(url.hostname, port=url.port or (993 if secure else 143), ssl=secure, timeout=60)
    except OSError as exc:
        raise SourceError(f"{shown}: cannot connect to the IMAP server ({exc})") from exc
    try:
        client.login(unquote(url.username or ""), config.bounces.imap_password())
        client.select_folder(folder)
        unseen = client.search(["UNSEEN"])
        for start in range(0, len(unseen), _FETCH_BATCH):
            batch = unseen[start:start + _FETCH_BATCH]
            recognised = []
            for uid, data in client.fetch(batch, ["BODY.PEEK[]"]).items():
                outcomes = tuple(process_message(config, store, data[b"BODY[]"], f"imap:{shown}"))
                if _recognised(outcomes):
                    recognised.append(uid)
                yield Read(f"imap:{shown}#{uid}", outcomes, _recognised(outcomes))
            if recognised:
                _move(client, recognised, config.bounces.processed_folder)
    except (IMAPClient.Error, OSError) as exc:
        said = exc.args[0] if exc.args else exc
        raise SourceError(f"{shown}: {said.decode('utf-8', 'replace') if isinstance(said, bytes) else said}") \
            from exc
    finally:
        try:
            client.logout()
        except (IMAPClient.Error, OSError):
            pass   # the connection is gone already


def _move(client: IMAPClient, uids: list[int], folder: str) -> None:
    """Move messages to `folder`, creating it if missing: MOVE when the server has it, else copy and flag
    deleted, expunging only those (UID EXPUNGE); a server without UIDPLUS could expunge only every deleted
    message, so there they stay flagged for the mail client to expunge."""
    if not client.folder_exists(folder):
        client.create_folder(folder)
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.delete_messages(uids)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)


def _recognised(outcomes: tuple[Outcome, ...]) -> bool:
    return any(outcome.kind != "not-a-bounce" for outcome in outcomes)

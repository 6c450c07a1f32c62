"""Where bounces are read: a local Maildir or mbox (`bounces.mailbox`) and an IMAP folder
(`bounces.imap_url`). Each source only reads what it does not recognise: a message classified as
something other than "not-a-bounce" is moved to `bounces.processed_folder` (created when first needed;
in a Maildir, a Maildir++ sub-folder); anything else stays exactly as it was (an IMAP message keeps its
unseen flag, a Maildir file its place). An mbox is never written: reading a message again records
nothing new. A message that cannot be read (`unreadable`: too big, too deeply nested, too many parts) is
recorded with the reason and moved like a recognised one, so it is read once and the messages behind it
are read as usual.
"""

from __future__ import annotations

import logging
import mailbox
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient

from feedpub.config import Config
from feedpub.errors import FeedpubError
from feedpub.send.bounces.classify import SIZE_LIMIT, Bounce, classify
from feedpub.send.bounces.process import Outcome, Returned, named_delivery, read_message, record_all
from feedpub.store import Store

log = logging.getLogger(__name__)

# Messages read (from IMAP: per round trip) and recorded per transaction.
_BATCH = 200
# A local backlog at least this large is classified in parallel (see `_recorded`).
_PARALLEL_FROM = 1000
K = TypeVar("K")


class SourceError(FeedpubError):
    """A mailbox or IMAP server that cannot be read; the message names it."""


@dataclass(frozen=True)
class Read:
    """One message read from a source and what became of it."""

    where: str                   # "mailbox:PATH#KEY", "imap:URL#UID"
    outcomes: tuple[Outcome, ...]
    moved: bool
    unreadable: str | None       # why the message could not be read (the bounce's `why`), else None


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
    """Each message file of new/ and cur/, listed once: `mailbox.Maildir` lists the folder again after
    every change to it, which makes reading and moving 10,000 messages quadratic."""
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise SourceError(f"{path}: bounces.mailbox is a folder but not a Maildir (expected cur/, new/ and tmp/)")
    files = sorted((file for place in ("new", "cur") for file in (path / place).iterdir()
                    if not file.name.startswith(".")), key=lambda file: file.name)

    def load(file: Path) -> bytes | None:
        try:
            with file.open("rb") as handle:
                return handle.read(SIZE_LIMIT + 1)
        except FileNotFoundError:     # another reader took it meanwhile
            return None

    processed: Path | None = None
    for file, bounce, outcomes in _recorded(config, store, f"mailbox:{path}", files, load):
        moved = _recognised(outcomes)
        if moved:
            if processed is None:
                processed = _maildir_folder(path, config.bounces.processed_folder)
            # A rename into the same place of the folder: bytes, flags and times stay as they were.
            file.rename(processed / file.parent.name / file.name)
        yield Read(f"mailbox:{path}#{file.name.split(':', 1)[0]}", tuple(outcomes), moved, _unreadable(bounce))


def _maildir_folder(path: Path, name: str) -> Path:
    """The Maildir++ sub-folder `name` (a dot-folder beside cur/), created if missing."""
    box = mailbox.Maildir(path, factory=None, create=False)
    if name not in box.list_folders():
        box.add_folder(name)
    return path / f".{name}"


def _read_mbox(config: Config, store: Store, path: Path) -> Iterator[Read]:
    box = mailbox.mbox(path, factory=None, create=False)

    def load(key: str) -> bytes:
        with box.get_file(key) as message:
            return message.read(SIZE_LIMIT + 1)

    try:
        for key, bounce, outcomes in _recorded(config, store, f"mailbox:{path}", list(box.iterkeys()), load):
            yield Read(f"mailbox:{path}#{key}", tuple(outcomes), False, _unreadable(bounce))
    finally:
        box.close()


def _recorded(config: Config, store: Store, source: str, keys: list[K],
              load: Callable[[K], bytes | None]) -> Iterator[tuple[K, Bounce, list[Outcome]]]:
    """Each message (by key) classified and recorded, _BATCH per transaction. A backlog of _PARALLEL_FROM
    or more is classified by a pool of processes, one batch ahead of the recording here: parsing is
    CPU-bound and ~60% of the time (cProfile of `make bench-bounces`)."""
    with _classifier(len(keys)) as classify_all:
        pending: tuple[list[tuple[K, bytes]], Iterator[Bounce]] | None = None
        for start in range(0, len(keys) + _BATCH, _BATCH):
            loaded = [(key, raw) for key in keys[start:start + _BATCH] if (raw := load(key)) is not None]
            submitted = (loaded, classify_all([raw for _, raw in loaded]))
            if pending is not None:
                batch, bounces = pending
                items = [Returned(bounce, named_delivery(config, raw), raw, source)
                         for (_, raw), bounce in zip(batch, bounces, strict=True)]
                yield from zip((key for key, _ in batch), (item.bounce for item in items),
                               record_all(config, store, items), strict=True)
            pending = submitted


@contextmanager
def _classifier(count: int) -> Iterator[Callable[[list[bytes]], Iterator[Bounce]]]:
    if count < _PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        yield lambda raws: map(classify, raws)
        return
    # spawn, not fork: the daemon has threads (scheduler, web server), and a forked child would inherit
    # whatever locks they held.
    with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda raws: pool.map(classify, raws, chunksize=16)


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
        for start in range(0, len(unseen), _BATCH):
            # A partial fetch: the server sends no more than a message that is read can be.
            fetched = client.fetch(unseen[start:start + _BATCH], [f"BODY.PEEK[]<0.{SIZE_LIMIT + 1}>"])
            items = [read_message(config, data[b"BODY[]<0>"], f"imap:{shown}") for data in fetched.values()]
            recognised = []
            for uid, item, outcomes in zip(fetched, items, record_all(config, store, items), strict=True):
                if _recognised(outcomes):
                    recognised.append(uid)
                yield Read(f"imap:{shown}#{uid}", tuple(outcomes), _recognised(outcomes), _unreadable(item.bounce))
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


def _unreadable(bounce: Bounce) -> str | None:
    return bounce.why if bounce.kind == "unreadable" else None


def _recognised(outcomes: list[Outcome] | tuple[Outcome, ...]) -> bool:
    return any(outcome.kind != "not-a-bounce" for outcome in outcomes)

"""The operators of the dashboard (`/admin`): their accounts, their server-side sessions and the audit log
of every login and every action, in the store (tables of `feedpub.schema`).

Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes). A session is a random id
the browser holds (signed, see `feedpub.web.admin.auth`); the store keeps only its SHA-256, so a copy of
the database opens no session. Removing an account or resetting its password ends its sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from feedpub.errors import FeedpubError, Message, message
from feedpub.schema import admin_audit, admin_sessions, admin_users
from feedpub.store import Store, utcnow

_HASHER = PasswordHasher()
# A hash to verify against when the account does not exist: the answer takes as long as for a real one.
_DUMMY_HASH = _HASHER.hash("feedpub: no such account")
MIN_PASSWORD = 10
MAX_NAME = 100


class AccountError(FeedpubError):
    """A bad account name or password, or an account that exists (add) or does not (remove, reset): `what`, in
    words of `problems.toml` (the message is their English)."""

    def __init__(self, what: Message) -> None:
        super().__init__(str(what))
        self.what = what


@dataclass(frozen=True)
class AdminUser:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Session:
    user: AdminUser
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str
    address: str
    action: str
    detail: str


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(message("password_too_short", minimum=MIN_PASSWORD))


def add_user(store: Store, name: str, password: str) -> AdminUser:
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise AccountError(message("bad_account_name", name=name, maximum=MAX_NAME))
    check_password(password)
    now = utcnow()
    try:
        with store.writing() as conn:
            user_id = conn.execute(admin_users.insert().values(
                name=name, password_hash=_HASHER.hash(password), created_at=now)).inserted_primary_key[0]
    except sa.exc.IntegrityError as exc:
        raise AccountError(message("account_exists", name=name)) from exc
    return AdminUser(user_id, name, now)


def users(store: Store) -> list[AdminUser]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(admin_users).order_by(admin_users.c.name))
        return [AdminUser(row.id, row.name, row.created_at) for row in rows]


def has_users(store: Store) -> bool:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(admin_users.c.id).limit(1)) is not None


def remove_user(store: Store, name: str) -> None:
    with store.writing() as conn:
        user_id = _user_id(conn, name)
        conn.execute(admin_sessions.delete().where(admin_sessions.c.user_id == user_id))
        conn.execute(admin_users.delete().where(admin_users.c.id == user_id))


def reset_password(store: Store, name: str, password: str) -> None:
    """Set a new password and end every session of the account."""
    check_password(password)
    with store.writing() as conn:
        user_id = _user_id(conn, name)
        conn.execute(admin_users.update().where(admin_users.c.id == user_id)
                     .values(password_hash=_HASHER.hash(password)))
        conn.execute(admin_sessions.delete().where(admin_sessions.c.user_id == user_id))


def authenticate(store: Store, name: str, password: str) -> AdminUser | None:
    """The account if the password is right; None otherwise (unknown names take as long as known ones)."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(admin_users).where(admin_users.c.name == name)).first()
    try:
        _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return AdminUser(row.id, row.name, row.created_at) if row else None


def open_session(store: Store, user: AdminUser, lifetime: timedelta) -> tuple[str, Session]:
    """A new session: (the id for the cookie, the session). Expired sessions are swept on the way."""
    session_id = secrets.token_hex(32)
    now = utcnow()
    session = Session(user, secrets.token_hex(32), now + lifetime)
    with store.writing() as conn:
        conn.execute(admin_sessions.delete().where(admin_sessions.c.expires_at <= now))
        conn.execute(admin_sessions.insert().values(id=_digest(session_id), user_id=user.id, csrf=session.csrf,
                                                    created_at=now, expires_at=session.expires_at))
    return session_id, session


def session(store: Store, session_id: str) -> Session | None:
    """The live session with this id; None when unknown, ended or expired."""
    query = (sa.select(admin_sessions.c.csrf, admin_sessions.c.expires_at, admin_users.c.id, admin_users.c.name,
                       admin_users.c.created_at)
             .join(admin_users, admin_users.c.id == admin_sessions.c.user_id)
             .where(admin_sessions.c.id == _digest(session_id), admin_sessions.c.expires_at > utcnow()))
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    return Session(AdminUser(row.id, row.name, row.created_at), row.csrf, row.expires_at) if row else None


def close_session(store: Store, session_id: str) -> None:
    with store.writing() as conn:
        conn.execute(admin_sessions.delete().where(admin_sessions.c.id == _digest(session_id)))


def audit(store: Store, *, user: str, address: str, action: str, detail: str = "") -> None:
    with store.writing() as conn:
        conn.execute(admin_audit.insert().values(at=utcnow(), user_name=user[:MAX_NAME], address=address[:64],
                                                 action=action, detail=detail))


def audit_log(store: Store, limit: int, about: str = "") -> list[AuditEntry]:
    """The newest entries first; with `about`, only those whose detail names it (a subscriber's address)."""
    query = sa.select(admin_audit).order_by(admin_audit.c.id.desc()).limit(limit)
    if about:
        query = query.where(admin_audit.c.detail.contains(about, autoescape=True))
    with store.engine.connect() as conn:
        return [AuditEntry(r.at, r.user_name, r.address, r.action, r.detail) for r in conn.execute(query)]


def _user_id(conn: sa.Connection, name: str) -> int:
    found = conn.scalar(sa.select(admin_users.c.id).where(admin_users.c.name == name))
    if found is None:
        raise AccountError(message("no_account", name=name))
    return found


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()

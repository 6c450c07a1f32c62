"""feedpub.toml → `feedpub.config.Config`: reading the file (and a Jekyll site's `_config.yml` it names),
each value's type and checks, and errors that name the file, the line of the key (best effort: TOML
parsers do not report positions) and what was expected, in the file's own `site.language` (its words are the
`config_…` strings of `feedpub/problems.toml`; English while the file cannot be read as TOML).
"""

from __future__ import annotations

import dataclasses
import re
import stat
import tomllib
from collections.abc import Callable
from email.utils import getaddresses
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedpub import errors
from feedpub.config import Config, parse_duration, parse_local_time, parse_monthly_slot, parse_schedule_entry
from feedpub.errors import ConfigError, Message, Problem, message, reason
from feedpub.jekyll import FrontMatterDefault, JekyllCollection
from feedpub.records import CADENCES

# TOML names that are Python keywords or otherwise differ from the field name.
_RENAMED = {"from": "from_"}
_CHOICES = {
    ("feeds", "formats"): {"atom", "rss", "json"},
    ("feeds", "content"): {"full", "excerpt"},
    ("smtp", "security"): {"starttls", "ssl", "none"},
    ("digest", "images"): {"image", "first", "none"},
    ("digest", "cadences"): set(CADENCES),
    ("digest", "post_content"): {"full", "excerpt"},
}
# The stores feedpub ships drivers for: SQLite, and PostgreSQL through psycopg 3.
_STORE_URL = re.compile(r"^(sqlite:///|postgresql(\+psycopg)?://)")
# What may not stand in a header value: control characters and line breaks.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A DKIM domain or selector: dot-separated ASCII labels (RFC 6376 3.1, 3.5).
_DNS_LABELS = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
# An account name as Mastodon's USERNAME_RE takes it (app/models/account.rb), lower-case as feedpub serves it.
_USERNAME = re.compile(r"^[a-z0-9_]+([a-z0-9_.-]+[a-z0-9_]+)?$")
# What VERP adds to smtp.return_path's local part: "+", a delivery id of up to 18 digits, "-", 8 signature
# characters (feedpub.send.verp).
VERP_TAG_LENGTH = 1 + 18 + 1 + 8


class ConfigProblem(ConfigError):
    """What is wrong with feedpub.toml (or the `_config.yml` it names), put into the file's language by
    `load_config`; `str()` is English."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def load_config(path: Path | None) -> Config:
    """Read `path` (None → built-in defaults rooted at the working directory)."""
    if path is None:
        return Config()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigProblem(Problem(str(path), None, message("config_cannot_read", reason=exc.strerror or ""))
                            ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigProblem(Problem(str(path), None, message("config_not_utf8"), message("config_expected_toml"))
                            ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise ConfigProblem(Problem(str(path), int(line[1]) if line else None,
                                    message("config_invalid_toml", reason=str(exc)))) from exc
    if mode & stat.S_IWOTH:
        # Anyone on the machine could point smtp.host at their server or password_env at another secret; so
        # its strings override (web.templates_dir) is not read either.
        raise ConfigError(_in_language(data, path, Problem(str(path), None, message("config_world_writable"),
                                                           message("config_expected_chmod", path=str(path))),
                                       override=False))
    try:
        return _load(data, path, text)
    except ConfigProblem as exc:
        raise ConfigError(_in_language(data, path, exc.problem)) from exc


def _in_language(data: dict[str, Any], path: Path, problem: Problem, *, override: bool = True) -> str:
    """`problem` in the file's own site.language, web.templates_dir's strings.toml over the shipped words; English
    where the language is unset or those words cannot be read."""
    # Imported here: feedpub.strings loads Jinja (~100 ms), which only a config with a problem needs.
    from feedpub.strings import english, load_strings, problem_line

    site, web = data.get("site"), data.get("web")
    language = site.get("language") if isinstance(site, dict) else None
    folder = web.get("templates_dir") if override and isinstance(web, dict) else None
    try:
        words = load_strings("problems", language if isinstance(language, str) else "en",
                             path.parent / folder if isinstance(folder, str) and folder else None)
    except ConfigError:
        words = english("problems")
    return problem_line(problem, words)


def _load(data: dict[str, Any], path: Path, text: str) -> Config:
    given = frozenset(f"{name}.{key}" for name, table in data.items() if isinstance(table, dict) for key in table)
    site = data.get("site")
    defaults: tuple[FrontMatterDefault, ...] = ()
    collections: tuple[JekyllCollection, ...] = ()
    if isinstance(site, dict) and isinstance(site.get("jekyll_dir"), str) and site["jekyll_dir"]:
        data, defaults, collections = _with_jekyll(data, path, text, site["jekyll_dir"])
    return dataclasses.replace(_build(data, path, text), given=given, front_matter_defaults=defaults,
                               jekyll_collections=collections)


def _with_jekyll(data: dict[str, Any], path: Path, text: str, jekyll_dir: str,
                 ) -> tuple[dict[str, Any], tuple[FrontMatterDefault, ...], tuple[JekyllCollection, ...]]:
    """`data` with the keys it leaves unset taken from the Jekyll site's `_config.yml` (feedpub.toml wins), the
    site's front matter defaults and its collections."""
    from feedpub import jekyll  # here: YAML is imported only for configs that name a Jekyll site

    root = (path.parent / jekyll_dir).resolve()
    if not root.is_dir():
        raise _at(path, text, "site.jekyll_dir", message("config_jekyll_dir_not_folder", root=str(root)),
                  message("config_expected_jekyll_dir"))
    if not jekyll.config_files(root):
        raise _at(path, text, "site.jekyll_dir", message("config_jekyll_dir_no_config", root=str(root)),
                  message("config_expected_jekyll_dir"))
    values, problems = jekyll.read_config(root)
    if problems:
        raise ConfigProblem(problems[0])
    found = jekyll.settings(values).values
    # Checked on their own first, so that a bad value is reported against _config.yml, not feedpub.toml.
    _build(found, jekyll.config_files(root)[0], "")
    merged = {section: dict(table) if isinstance(table, dict) else table for section, table in data.items()}
    for section, table in found.items():
        target = merged.setdefault(section, {})
        for key, value in table.items():
            if key == "posts_dir":
                value = (Path(jekyll_dir) / value).as_posix()
            if isinstance(target, dict):
                target.setdefault(key, value)
    return merged, jekyll.front_matter_defaults(values)[0], jekyll.collections(values)


def _build(data: dict[str, Any], path: Path, text: str) -> Config:
    sections: dict[str, Any] = {}
    hints = get_type_hints(Config)
    for name, value in data.items():
        if name not in hints or name in ("root", "source", "given", "front_matter_defaults", "jekyll_collections"):
            raise _at(path, text, name, message("config_unknown_section", name=name), _known(Config))
        if not isinstance(value, dict):
            raise _at(path, text, name, message("config_not_table", name=name))
        sections[name] = _section(hints[name], name, value, path, text)
    config = Config(**sections, root=path.parent.resolve(), source=str(path))
    _validate(config, path, text)
    return _with_dkim_key(config, path, text)


def _section(cls: type, section: str, values: dict[str, Any], path: Path, text: str) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = _RENAMED.get(key, key)
        dotted = f"{section}.{key}"
        if name not in hints or name.startswith("_"):
            raise _at(path, text, dotted, message("config_unknown_key", key=dotted), _known(cls))
        if dataclasses.is_dataclass(hints[name]):     # a nested table such as [smtp.dkim]
            if not isinstance(value, dict):
                raise _at(path, text, dotted, message("config_not_table", name=dotted))
            kwargs[name] = _section(hints[name], dotted, value, path, text)
            continue
        try:
            kwargs[name] = _coerce(value, hints[name], (section, key))
            if (section, key) in _VALUE_CHECKS:
                _VALUE_CHECKS[section, key](kwargs[name])
        except (TypeError, ValueError) as exc:
            raise _at(path, text, dotted, message("config_bad_value", key=dotted, reason=reason(exc))) from exc
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: tuple[str, str]) -> Any:
    origin = get_origin(hint)
    if where == ("digest", "schedule"):
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list) or not all(isinstance(v, str) for v in entries):
            raise TypeError(message("config_expected_string_or_list"))
        if not entries:
            raise ValueError(message("config_schedule_empty"))
        return tuple(parse_schedule_entry(entry) for entry in entries)
    if where == ("digest", "daily_at"):
        if not isinstance(value, str):
            raise TypeError(message("config_expected_time"))
        return parse_local_time(value)
    if where == ("digest", "monthly_on"):
        if not isinstance(value, str):
            raise TypeError(message("config_expected_monthly_slot"))
        return parse_monthly_slot(value)
    if where == ("feeds", "websub_hub"):
        hubs = [value] if isinstance(value, str) else value
        if not isinstance(hubs, list) or not all(isinstance(v, str) for v in hubs):
            raise TypeError(message("config_expected_urls"))
        return tuple(hub for hub in hubs if hub.strip())
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(message("config_expected_strings"))
        allowed = _CHOICES.get(where)
        for item in value:
            if allowed and item not in allowed:
                raise ValueError(message("config_not_one_of", value=repr(item), allowed=str(sorted(allowed))))
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise TypeError(message("config_expected_string_table"))
        return dict(value)
    if isinstance(hint, UnionType):
        hint = get_args(hint)[0]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (hint is bool) != isinstance(value, bool) or not isinstance(value, hint):   # bool is an int subclass
        raise TypeError(message("config_wrong_type", expected=_type_name(hint), got=_type_name(type(value))))
    allowed = _CHOICES.get(where)
    if allowed and value not in allowed:
        raise ValueError(message("config_not_one_of", value=repr(value), allowed=str(sorted(allowed))))
    return value


def _check_sender(value: str) -> None:
    """`digest.from`: one address mail can be sent from, with an optional display name, on one line."""
    # Imported here, not above: email-validator's import costs ~70 ms (-X importtime), a quarter of a
    # no-op `feedpub build`; only configs that set an address pay it.
    from feedpub.addresses import BadAddress, mailable

    example = "'ALLFORCES編集部 <news@blog.example.com>'"
    if _HEADER_BREAKERS.search(value):
        raise ValueError(message("config_line_break", value=repr(value), example=example))
    found = getaddresses([value])
    if len(found) != 1:
        raise ValueError(message("config_not_one_address", value=repr(value), example=example))
    try:
        mailable(found[0][1])
    except BadAddress as exc:
        raise ValueError(message("config_bad_address", value=repr(value), reason=str(exc), example=example)
                         ) from None


def _check_unsubscribe_mailto(value: str) -> None:
    """`web.unsubscribe_mailto` when set: an address or a mailto: URI that can stand in List-Unsubscribe."""
    uri = value.strip()
    if not uri:
        return
    from feedpub.addresses import BadAddress, mailable  # ~70 ms, see _check_sender

    example = "'unsubscribe@blog.example.com'"
    if not uri.isascii() or _HEADER_BREAKERS.search(uri) or any(c in uri for c in " <>"):
        raise ValueError(message("config_not_list_unsubscribe", value=repr(value), example=example))
    try:
        mailable(uri.removeprefix("mailto:").split("?", 1)[0])
    except BadAddress as exc:
        raise ValueError(message("config_address_reason", reason=str(exc), example=example)) from None


def _check_return_path(value: str) -> None:
    """`smtp.return_path` when set: a plain address whose local part has room for a VERP tag."""
    if not value:
        return
    from feedpub.addresses import MAX_LOCAL_PART, BadAddress, mailable  # ~70 ms, see _check_sender

    example = "'bounces@blog.example.com'"
    try:
        address = mailable(value)
    except BadAddress as exc:
        raise ValueError(message("config_address_reason", reason=str(exc), example=example)) from None
    local = address.rsplit("@", 1)[0]
    if address.lower() != value.strip().lower() or "+" in local:
        raise ValueError(message("config_not_plain_address", value=repr(value), example=example))
    if len(local) + VERP_TAG_LENGTH > MAX_LOCAL_PART:
        raise ValueError(message("config_no_room_for_verp", value=repr(value),
                                 most=MAX_LOCAL_PART - VERP_TAG_LENGTH, example=example))


def _check_imap_url(value: str) -> None:
    match = re.match(r"^(imaps?)://[^@/\s]+@([^/:\s]+|\[[0-9a-f:]+\])(:\d+)?(/\S*)?$", value)
    if value and not match:
        raise ValueError(message("config_not_imap_url", value=repr(value)))
    if match and match[1] == "imap" and match[2] not in ("127.0.0.1", "localhost", "[::1]"):
        raise ValueError(message("config_imap_unencrypted", value=repr(value)))


def _check_username(value: str) -> None:
    """`activitypub.username`: a name Mastodon accepts in `@name@host` (its USERNAME_RE)."""
    if not _USERNAME.match(value):
        raise ValueError(errors.message("config_activitypub_username", value=repr(value)))


def _check_subject(value: str) -> None:
    # Imported here: jinja2 costs ~100 ms of start-up (-X importtime), and a no-op build needs none of it.
    import jinja2

    try:
        jinja2.Environment().parse(value)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(message("config_subject_template", reason=str(exc))) from None


def _check_hubs(hubs: tuple[str, ...]) -> None:
    for hub in hubs:
        if not re.match(r"^https?://[^/\s]+\S*$", hub):
            raise ValueError(message("config_not_hub_url", value=repr(hub)))


def _check_store_url(value: str) -> None:
    if not _STORE_URL.match(value):
        raise ValueError(message("config_not_store_url", value=repr(value)))


def check_dns_name(value: str) -> None:
    """A DKIM domain or selector ('' passes: unset); ValueError naming what was expected."""
    if value and not _DNS_LABELS.match(value):
        raise ValueError(message("config_not_dns_name", value=repr(value)))


def _check_rate(value: float) -> None:
    """A share of the messages sent: more than 0, at most 1."""
    if not 0 < value <= 1:
        raise ValueError(message("config_not_rate", value=repr(value)))


# Values the file sets that are checked beyond their type, where a bad one would otherwise surface only
# when mail goes out or the store opens.
_VALUE_CHECKS: dict[tuple[str, str], Callable[[Any], None]] = {
    ("digest", "from"): _check_sender,
    ("digest", "subject"): _check_subject,
    ("smtp.dkim", "domain"): check_dns_name,
    ("smtp.dkim", "selector"): check_dns_name,
    ("feeds", "websub_hub"): _check_hubs,
    ("store", "url"): _check_store_url,
    ("web", "unsubscribe_mailto"): _check_unsubscribe_mailto,
    ("smtp", "return_path"): _check_return_path,
    ("bounces", "imap_url"): _check_imap_url,
    ("bounces", "max_complaint_rate"): _check_rate,
    ("bounces", "max_bounce_rate"): _check_rate,
    ("activitypub", "username"): _check_username,
}


def _validate(config: Config, path: Path, text: str) -> None:
    checks: list[tuple[str, Message, Message | None]] = []
    try:
        ZoneInfo(config.site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        checks.append(("site.timezone", message("config_unknown_timezone", value=repr(config.site.timezone)),
                       message("config_expected_timezone")))
    if not re.match(r"^https?://[^/\s]+", config.site.url):
        checks.append(("site.url", message("config_not_site_url", value=repr(config.site.url)),
                       message("config_expected_site_url")))
    if config.site.baseurl and not config.site.baseurl.startswith("/"):
        checks.append(("site.baseurl", message("config_baseurl_slash", value=repr(config.site.baseurl)),
                       message("config_expected_baseurl")))
    for key in ("atom_path", "category_atom_path", "tag_atom_path"):
        value = getattr(config.feeds, key)
        if (value or key == "atom_path") and (not value.endswith(".xml") or value.startswith("/")
                                              or ".." in value.split("/")):
            checks.append((f"feeds.{key}", message("config_not_output_path", key=f"feeds.{key}", value=repr(value)),
                           message("config_expected_output_path")))
    if config.feeds.limit < 1:
        checks.append(("feeds.limit", message("config_at_least_1", key="feeds.limit"),
                       message("config_expected_positive")))
    if config.smtp.rate_per_second <= 0:
        checks.append(("smtp.rate_per_second", message("config_more_than_0", key="smtp.rate_per_second"),
                       message("config_expected_rate_per_second")))
    if config.smtp.connections < 1:
        checks.append(("smtp.connections", message("config_at_least_1", key="smtp.connections"),
                       message("config_expected_positive")))
    for section, key, value in (("feeds", "rebuild_every", config.feeds.rebuild_every),
                                ("digest", "misfire_grace", config.digest.misfire_grace),
                                ("digest", "post_delay", config.digest.post_delay),
                                ("smtp", "retry_base", config.smtp.retry_base),
                                ("bounces", "soft_window", config.bounces.soft_window),
                                ("bounces", "poll_every", config.bounces.poll_every),
                                ("activitypub", "give_up_after", config.activitypub.give_up_after)):
        try:
            parse_duration(value)
        except ValueError as exc:
            checks.append((f"{section}.{key}", message("config_bad_value", key=key, reason=reason(exc)), None))
    if not config.digest.cadences:
        checks.append(("digest.cadences", message("config_cadences_empty"), message("config_expected_cadences")))
    if config.digest.post_burst < 1 or config.digest.welcome_posts < 0:
        checks.append(("digest", message("config_post_burst"), message("config_expected_post_burst")))
    if config.bounces.soft_limit < 1 or config.bounces.raw_limit < 1024:
        checks.append(("bounces", message("config_soft_limit"), message("config_expected_soft_limit")))
    if checks:
        where, what, expected = checks[0]
        raise _at(path, text, where, what, expected)


def _with_dkim_key(config: Config, path: Path, text: str) -> Config:
    """`config` holding the `[smtp.dkim]` private key: read here, once per run, so that a missing or bad
    key stops every command (`check` included) before anything is sent."""
    dkim = config.smtp.dkim
    settings = {"domain": dkim.domain, "selector": dkim.selector, "key_file": dkim.key_file}
    if not any(settings.values()):
        return config
    if not all(settings.values()):
        unset = ", ".join(f"'smtp.dkim.{key}'" for key, value in settings.items() if not value)
        raise _at(path, text, "smtp.dkim", message("config_dkim_unset", keys=unset), message("config_expected_dkim"))
    key_path = config.path(dkim.key_file)
    expected = message("config_expected_dkim_key")
    try:
        key = key_path.read_bytes()
    except OSError as exc:
        raise _at(path, text, "smtp.dkim.key_file",
                  message("config_dkim_cannot_read", path=str(key_path), reason=exc.strerror or ""), expected) from exc
    # Imported here: cryptography's import costs ~20 ms (-X importtime); only signing configs pay it.
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        private = load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:   # not PEM, encrypted, or a kind OpenSSL does not know
        raise _at(path, text, "smtp.dkim.key_file",
                  message("config_dkim_unreadable", path=str(key_path), reason=str(exc)), expected) from None
    if not isinstance(private, RSAPrivateKey):
        raise _at(path, text, "smtp.dkim.key_file", message("config_dkim_not_rsa", path=str(key_path)), expected)
    bits = private.key_size
    if bits < 1024:   # verifiers ignore signatures made with shorter keys (RFC 8301)
        raise _at(path, text, "smtp.dkim.key_file", message("config_dkim_short", path=str(key_path), bits=bits),
                  expected)
    return dataclasses.replace(config, smtp=dataclasses.replace(
        config.smtp, dkim=dataclasses.replace(dkim, _private_key=key)))


def _at(path: Path, text: str, where: str, what: Message, expected: Message | None = None) -> ConfigProblem:
    """`path:line: what (expected …)`, the line being that of `where`: a table ("smtp", "smtp.dkim") or
    a key in it ("smtp.port", "smtp.dkim.domain")."""
    line = _line(text, where) or ("." in where and _line(text, *where.rsplit(".", 1))) or None
    return ConfigProblem(Problem(str(path), line, what, expected))


def _line(text: str, section: str, key: str = "") -> int | None:
    """The line of a section's header, or of a key in the section's table (best effort: TOML parsers do
    not report positions). Leading blanks are spaces and tabs only: a match must not start on an empty line
    above the key."""
    header = re.search(rf"^[ \t]*\[\s*{re.escape(section)}\s*\]", text, re.M)
    if not key:
        found = header or re.search(rf'^[ \t]*"?{re.escape(section)}"?\s*=', text, re.M)
    else:
        start = header.end() if header else 0
        following = re.compile(r"^[ \t]*\[", re.M).search(text, start) if header else None
        found = re.compile(rf'^[ \t]*"?{re.escape(key)}"?\s*=', re.M).search(
            text, start, following.start() if following else len(text))
    return text.count("\n", 0, found.start()) + 1 if found else None


def _known(cls: type) -> Message:
    names = [f.name.rstrip("_") for f in dataclasses.fields(cls)
             if f.name not in ("root", "source", "given", "front_matter_defaults", "jekyll_collections")
             and not f.name.startswith("_")]
    return message("config_one_of", names=", ".join(names))


def _type_name(t: Any) -> Message:
    key = {str: "string", int: "integer", float: "number", bool: "bool", list: "list", dict: "table"}.get(t)
    return message(f"config_type_{key}") if key else message("text", text=getattr(t, "__name__", str(t)))

"""A Jekyll site's own files, read as Jekyll reads them: `_config.yml` (then each `_config.*.yml` over it)
→ feedpub.toml values; `_data/` → Liquid's `site.data`; and the list of the site files Liquid reads, so a
build notices when they change.

Shared ground: `config.py` fills the keys feedpub.toml leaves unset from here, and `site/liquid.py`
gives Liquid the rest. `settings` is pure (a dict in, values out); the functions that read files are
the edge.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedpub.errors import Message, Problem, message

# Jekyll's keys that feedpub uses, and where each goes in feedpub.toml.
SITE_KEYS = {"url": "url", "baseurl": "baseurl", "title": "title", "description": "description",
             "author": "author", "timezone": "timezone", "permalink": "permalink", "lang": "language",
             "excerpt_separator": "excerpt_separator", "future": "future", "show_drafts": "show_drafts"}
# The feedpub.toml keys `settings` can fill: a feedpub.toml beside a Jekyll site leaves them to `_config.yml`.
FILLED_KEYS = frozenset({*(f"site.{key}" for key in SITE_KEYS.values()), "site.posts_dir", "site.exclude",
                         *(f"feeds.{key}" for key in ("atom_path", "limit", "content", "categories",
                                                     "category_atom_path", "tags", "tag_atom_path"))})
# jekyll-feed's defaults (jekyll-feed/lib/jekyll-feed/generator.rb).
FEED_PATH = "feed.xml"
FEED_POSTS_LIMIT = 10
FEED_CATEGORY_PATH = "feed/{name}.xml"
FEED_TAG_PATH = "feed/by_tag/{name}.xml"
# Jekyll's own keys that feedpub does not apply, and why; any other key is the site's own.
# problems.toml's key of why each key is not applied
_NOT_APPLIED = {
    "include": "jekyll_not_applied_include", "plugins": "jekyll_not_applied_plugins",
    "gems": "jekyll_not_applied_plugins", "markdown": "jekyll_not_applied_markdown",
    "kramdown": "jekyll_not_applied_markdown", "highlighter": "jekyll_not_applied_highlighter",
    "theme": "jekyll_not_applied_theme",
}
_DATA_EXTENSIONS = (".yml", ".yaml", ".json", ".csv", ".tsv")
MAX_DATA_BYTES = 10_000_000   # a data file, and any YAML file of the site


@dataclass(frozen=True)
class Settings:
    """What `_config.yml` says, as feedpub.toml values, and an account of every key."""

    values: dict[str, dict[str, Any]]     # section → key → value, as feedpub.toml would hold them
    used: dict[str, str | Message]        # Jekyll key → the feedpub key it fills (or a Message that names them)
    ignored: dict[str, Message]           # Jekyll key → why feedpub does not use it
    problems: tuple[Problem, ...] = ()


def config_files(root: Path) -> list[Path]:
    """`_config.yml` then the `_config.*.yml` overrides, in name order (later ones win)."""
    base = [root / "_config.yml"] if (root / "_config.yml").is_file() else []
    return base + sorted(p for p in root.glob("_config.*.yml") if p.is_file())


def read_config(root: Path) -> tuple[dict[str, Any], list[Problem]]:
    """The merged `_config*.yml` of the site at `root` (deep merge, as Jekyll's --config a,b does)."""
    merged: dict[str, Any] = {}
    problems: list[Problem] = []
    for path in config_files(root):
        data, problem = _load_yaml(path)
        if problem:
            problems.append(problem)
        elif isinstance(data, dict):
            merged = _deep_merge(merged, data)
        elif data is not None:
            problems.append(Problem(str(path), 1, message("not_mapping_of_keys"), message("expected_key_value_lines")))
    return merged, problems


def setting_files(root: Path) -> dict[str, Path]:
    """Every key of the site's `_config*.yml`, nested ones dotted ("feed.path") → the file whose value is in force
    (the last one that sets it)."""
    found: dict[str, Path] = {}
    for path in config_files(root):
        data, _ = _load_yaml(path)
        if isinstance(data, Mapping):
            found.update(dict.fromkeys(_dotted_keys(data), path))
    return found


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            keys += _dotted_keys(value, f"{prefix}{key}.")
    return keys


def settings(jekyll: Mapping[str, Any], source: str = "_config.yml") -> Settings:
    """feedpub.toml values from a Jekyll config (pure)."""
    site: dict[str, Any] = {}
    feeds: dict[str, Any] = {}
    used: dict[str, str | Message] = {}
    ignored: dict[str, Message] = {}
    problems: list[Problem] = []
    for key, value in jekyll.items():
        if key in SITE_KEYS:
            converted = _author(value) if key == "author" else value
            boolean = key in ("future", "show_drafts")
            if not boolean and isinstance(converted, int | float) and not isinstance(converted, bool):
                converted = str(converted)
            if isinstance(converted, bool) == boolean and isinstance(converted, str | bool):
                site[SITE_KEYS[key]] = converted
                used[key] = f"site.{SITE_KEYS[key]}"
            elif converted is not None:
                problems.append(Problem(source, None, message("jekyll_value_ignored", key=key, value=repr(converted)),
                                        message("expected_boolean" if boolean else "expected_string"),
                                        warning=True))
                ignored[key] = message("jekyll_ignored_unusable")
        elif key == "collections_dir":
            site["posts_dir"] = str(value).strip("/") or "."
            used[key] = "site.posts_dir"
        elif key == "exclude" and isinstance(value, list) and all(isinstance(item, str) for item in value):
            site["exclude"] = value
            used[key] = "site.exclude"
        elif key == "defaults":
            problems.extend(front_matter_defaults(jekyll, source)[1])
            used[key] = message("jekyll_used_defaults")
        elif key == "feed" and isinstance(value, Mapping):
            _feed(value, feeds, used, ignored)
        elif key == "collections" and isinstance(value, Mapping | list):
            used[key] = message("jekyll_used_collections")
        else:
            ignored[key] = message("jekyll_ignored_liquid", key=key,
                                   reason=message(_NOT_APPLIED.get(key, "jekyll_site_own_key")))
    site.setdefault("posts_dir", ".")   # the site itself: its _posts/ and _drafts/ folders hold the posts
    feeds.setdefault("atom_path", FEED_PATH)
    feeds.setdefault("limit", FEED_POSTS_LIMIT)
    values = {"site": site, "feeds": feeds}
    return Settings(values, used, ignored, tuple(problems))


def _feed(feed: Mapping[str, Any], feeds: dict[str, Any], used: dict[str, str | Message],
          ignored: dict[str, Message]) -> None:
    """jekyll-feed's `feed:` settings (jekyll-feed/lib/jekyll-feed/generator.rb): the feeds keep the URLs their
    subscribers have. `collections.posts` is the same as the top-level `path` and `categories`, and wins."""
    posts = _posts_collection(feed.get("collections"))
    for key, value in [*feed.items(), *((f"collections.posts.{k}", v) for k, v in posts.items())]:
        name = f"feed.{key}"
        if key in ("path", "collections.posts.path") and isinstance(value, str):
            if key == "path" and isinstance(posts.get("path"), str):
                ignored[name] = message("jekyll_ignored_posts_path_wins")
                continue
            feeds["atom_path"] = value.lstrip("/")
            used[name] = "feeds.atom_path"
        elif key == "posts_limit" and isinstance(value, int) and not isinstance(value, bool):
            feeds["limit"] = value
            used[name] = "feeds.limit"
        elif key == "excerpt_only" and isinstance(value, bool):
            feeds["content"] = "excerpt" if value else "full"
            used[name] = "feeds.content"
        elif key in ("categories", "collections.posts.categories") and value:
            feeds["categories"] = True
            feeds["category_atom_path"] = FEED_CATEGORY_PATH
            used[name] = message("jekyll_used_categories")
        elif key == "tags" and value is not None and value is not False:   # `tags: {}` is on, as in Ruby
            feeds["tags"] = True
            prefix = value.get("path") if isinstance(value, Mapping) else None
            # jekyll-feed joins the two as they are: `path: /feed/tags/` → feed/tags/<tag>.xml
            feeds["tag_atom_path"] = (str(prefix).lstrip("/") + "{name}.xml") if prefix else FEED_TAG_PATH
            used[name] = message("jekyll_used_tags")
        elif key == "collections":
            others = sorted(set(_collection_names(value)) - {"posts"})
            if others:
                ignored[name] = message("jekyll_ignored_collections", names=", ".join(others))
        else:
            ignored[name] = message("jekyll_ignored_unused")


def _collection_names(value: Any) -> list[str]:
    """jekyll-feed's `collections`: a list of names, or a mapping of names to their `path` and `categories`."""
    if isinstance(value, Mapping):
        return [str(name) for name in value]
    return [str(name) for name in value] if isinstance(value, list) else []


def _posts_collection(value: Any) -> Mapping[str, Any]:
    posts = value.get("posts") if isinstance(value, Mapping) else None
    return posts if isinstance(posts, Mapping) else {}


def _author(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get("name")
    return value


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_yaml(path: Path) -> tuple[Any, Problem | None]:
    # Imported here: YAML costs ~50 ms of start-up (-X importtime), and a no-op build, which lists the
    # site files through this module, reads none of them.
    from feedpub import safe_yaml

    try:
        with path.open("rb") as file:
            data = file.read(MAX_DATA_BYTES + 1)
        if len(data) > MAX_DATA_BYTES:
            return None, Problem(str(path), None, message("yaml_too_big", limit=MAX_DATA_BYTES),
                                 message("expected_smaller_file"))
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, Problem(str(path), None, message("cannot_be_read", reason=str(exc)), message("expected_utf8_yaml"))
    try:
        return safe_yaml.load(text), None
    except safe_yaml.UnsafeYaml as exc:
        return None, Problem(str(path), exc.line or 1, message("unsafe_yaml", reason=exc.what),
                             message("expected_few_aliases"))
    except safe_yaml.InvalidYaml as exc:
        return None, Problem(str(path), exc.line, message("invalid_yaml", reason=exc.what),
                             message("expected_key_value_lines"))


def read_data(root: Path) -> tuple[dict[str, Any], list[Problem]]:
    """`site.data`: each file below `_data/` under its name without extension, folders as nested maps."""
    data: dict[str, Any] = {}
    problems: list[Problem] = []
    folder = root / "_data"
    for path in _files(folder):
        parts = path.relative_to(folder).with_suffix("").parts
        value, problem = _data_file(path)
        if problem:
            problems.append(Problem(problem.path, problem.line, problem.message, problem.expected, warning=True))
            continue
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return data, problems


def _data_file(path: Path) -> tuple[Any, Problem | None]:
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        return _load_yaml(path)
    if path.stat().st_size > MAX_DATA_BYTES:
        return None, Problem(str(path), None, message("data_too_big", limit=MAX_DATA_BYTES))
    try:
        text = path.read_text(encoding="utf-8-sig")
        if suffix == ".json":
            return json.loads(text), None
        return list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, Problem(str(path), None, message("cannot_be_read", reason=str(exc)),
                             message("expected_utf8_text_file"))
    except json.JSONDecodeError as exc:
        return None, Problem(str(path), exc.lineno, message("invalid_json", reason=exc.msg))
    except RecursionError:
        return None, Problem(str(path), None, message("nested_too_deeply"), message("expected_shallow_data"))


def _files(folder: Path) -> list[Path]:
    """Data files below `folder`, never through a link that leads out of it."""
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if (name.lower().endswith(_DATA_EXTENSIONS) and not name.startswith(".")
                    and path.resolve().is_relative_to(folder.resolve())):
                found.append(path)
    return found


def site_file_stats(root: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file of the site that Liquid reads besides the posts: the config files,
    `_data/` and `_includes/`. A build whose posts are unchanged still redoes the work when these changed."""
    return _stats([*config_files(root), *_tree(root / "_data")]) + include_file_stats(root)


def include_file_stats(root: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file below `_includes/`."""
    return _stats(_tree(root / "_includes"))


def _tree(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _stats(paths: list[Path]) -> list[tuple[str, int, int]]:
    stats = []
    for path in paths:
        stat = path.stat()
        stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return stats


@dataclass(frozen=True)
class JekyllCollection:
    """One of `_config.yml`'s `collections:` other than posts, as jekyll/collection.rb reads it: its documents are in
    `<collections_dir>/_<label>/`; Jekyll writes them (and `{% link %}` finds them) only with `output: true`."""

    label: str                 # the name as Jekyll keeps it (sanitize_label: letters a-z, digits, `_`, `-`, `.`)
    output: bool
    permalink: str | None      # the collection's own URL template; None for `/:collection/:path` + the style's suffix
    collections_dir: str       # '' for the site folder itself


_UNSAFE_LABEL = re.compile(r"[^a-z0-9_\-.]", re.IGNORECASE)


def collections(jekyll: Mapping[str, Any]) -> tuple[JekyllCollection, ...]:
    """The site's collections but posts (Site#collections): `collections:` as a list of names (none written) or a
    mapping of names to their `output` and `permalink`."""
    declared = jekyll.get("collections")
    names = list(declared) if isinstance(declared, Mapping | list) else []
    folder = str(jekyll.get("collections_dir") or "").strip("/")
    found: dict[str, JekyllCollection] = {}
    for name in names:
        label = _UNSAFE_LABEL.sub("", str(name))
        # Collection#extract_metadata looks the sanitised label up, so `日本:` gets no settings.
        metadata = declared.get(label) if isinstance(declared, Mapping) else None
        metadata = metadata if isinstance(metadata, Mapping) else {}
        permalink = metadata.get("permalink")
        if label != "posts":
            found.setdefault(label, JekyllCollection(label, metadata.get("output", False) not in (None, False),
                                                     permalink if isinstance(permalink, str) else None, folder))
    return tuple(found.values())


@dataclass(frozen=True)
class FrontMatterDefault:
    """One set of `_config.yml`'s `defaults:` (jekyll/frontmatter_defaults.rb): its scope and its values."""

    path: str                  # scope.path as written ('' for every file); a glob when it holds '*'
    type: str | None           # scope.type ('posts', 'pages', …; Jekyll's deprecated 'post' read as 'posts')
    values: dict[str, Any]


# Jekyll::FrontmatterDefaults#update_deprecated_types.
_DEPRECATED_TYPES = {"post": "posts", "page": "pages", "draft": "drafts"}


def front_matter_defaults(jekyll: Mapping[str, Any], source: str = "_config.yml",
                          ) -> tuple[tuple[FrontMatterDefault, ...], list[Problem]]:
    """The valid sets of `defaults:`, in order; a set Jekyll skips (not a mapping with a `values` mapping) is a
    warning, as in Jekyll."""
    sets = jekyll.get("defaults")
    if not isinstance(sets, list):
        return (), []
    found, problems = [], []
    collections_dir = str(jekyll.get("collections_dir") or "").strip("/")
    for item in sets:
        if not isinstance(item, dict) or not isinstance(item.get("values"), dict):
            problems.append(Problem(source, None, message("invalid_default_set", value=repr(item)),
                                    message("expected_default_set"), warning=True))
            continue
        scope = item.get("scope") if isinstance(item.get("scope"), dict) else {}
        path = scope.get("path")
        path = path if isinstance(path, str) else ""
        if collections_dir and path.startswith(collections_dir + "/"):   # strip_collections_dir
            path = path.removeprefix(collections_dir + "/")
        kind = scope.get("type")
        kind = _DEPRECATED_TYPES.get(str(kind), str(kind)) if "type" in scope and kind is not None else None
        found.append(FrontMatterDefault(path, kind, item["values"]))
    return tuple(found), problems


def defaults_for(sets: tuple[FrontMatterDefault, ...], path: str, kind: str) -> dict[str, Any]:
    """Jekyll's FrontmatterDefaults#all: the values of every set whose scope holds the file at `path` (below the
    site, or its collections_dir) of type `kind`; the longer scope path wins, then a scope naming the type."""
    defaults: dict[str, Any] = {}
    winner: FrontMatterDefault | None = None
    for item in sets:
        if (item.type is not None and item.type != kind) or not _in_scope(item.path, path):
            continue
        if winner is None or _has_precedence(winner, item):
            defaults, winner = _deep_merge(defaults, item.values), item
        else:
            defaults = _deep_merge(item.values, defaults)
    return defaults


def with_defaults(defaults: Mapping[str, Any], front: Mapping[str, Any]) -> dict[str, Any]:
    """A file's front matter over its defaults, as Jekyll merges them (Document#merge_data!): mappings merged
    deeply, other values replaced, and the categories of both kept (Array#|, a string split at spaces)."""
    merged = _deep_merge(dict(defaults), front)
    listed = [_as_list(defaults.get("categories")), _as_list(front.get("categories"))]
    if all(value is not None for value in listed):
        merged["categories"] = list(dict.fromkeys(_hashable(item) for value in listed for item in value))
    return merged


def _as_list(value: Any) -> list[Any] | None:
    return value.split() if isinstance(value, str) else value if isinstance(value, list) else None


def _hashable(item: Any) -> Any:
    return item if isinstance(item, str | int | float | bool | type(None)) else repr(item)


def _in_scope(scope_path: str, path: str) -> bool:
    """applies_path?: a string prefix of the path, or a glob below the site matching a folder above it or it. As in
    Jekyll, a scope path with a leading slash never applies (the post's path has none; a glob from `/` is the file
    system's root)."""
    if not scope_path:
        return True
    path = path.removeprefix("/")
    if "*" not in scope_path:
        return path.startswith(scope_path)
    if scope_path.startswith("/"):
        return False
    pattern = re.compile(_glob_regex(scope_path))
    parts = path.split("/")
    return any(pattern.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1))


def _glob_regex(glob: str) -> str:
    """Ruby's Dir.glob pattern as a regular expression: `**/` any folders, `*` and `?` within one name."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def _has_precedence(old: FrontMatterDefault, new: FrontMatterDefault) -> bool:
    old_path, new_path = old.path.removeprefix("/"), new.path.removeprefix("/")
    if len(new_path) != len(old_path):
        return len(new_path) >= len(old_path)
    return new.type is not None or old.type is None

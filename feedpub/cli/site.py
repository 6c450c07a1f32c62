"""`feedpub init` and `feedpub check`."""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from feedpub.cli import OK, PARTIAL, App, error_text, fail, report, say, words
from feedpub.templates import folder

if TYPE_CHECKING:
    from feedpub.config import Config
    from feedpub.site.reader import Post


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--from-jekyll", "jekyll_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Write a feedpub.toml that publishes this Jekyll site, its _config.yml staying the source.")
def init(directory: Path, jekyll_dir: Path | None) -> None:
    """Scaffold feedpub.toml, posts/ and email_templates/ in DIRECTORY."""
    scaffold = resources.files("feedpub") / "scaffold"
    targets = {directory / "feedpub.toml": scaffold / "feedpub.toml"}
    if jekyll_dir is None:
        targets[directory / "posts" / "2025-01-01-welcome.md"] = scaffold / "welcome.md"
    templates = folder("email")
    if templates.is_dir():
        for item in templates.iterdir():
            if item.is_file() and not item.name.startswith("."):
                targets[directory / "email_templates" / item.name] = item
    t = _init_words(scaffold / "feedpub.toml", jekyll_dir)
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        fail(t.text("init_exists", path=existing[0]))
    (directory / "email_templates").mkdir(parents=True, exist_ok=True)
    if jekyll_dir is not None:
        toml = _toml_from_jekyll(jekyll_dir, directory, t)
        del targets[directory / "feedpub.toml"]
    for target, source in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, target.open("xb") as dst:
            shutil.copyfileobj(src, dst)
    if jekyll_dir is not None:
        (directory / "feedpub.toml").write_text(toml, encoding="utf-8")
        say(t.text("init_created_from_jekyll", config=directory / "feedpub.toml", jekyll=jekyll_dir,
                   templates=f"{directory / 'email_templates'}/"))
        return
    say(t.text("init_created", config=directory / "feedpub.toml", posts=f"{directory / 'posts'}/",
               templates=f"{directory / 'email_templates'}/"))


def _init_words(scaffold: Traversable, jekyll_dir: Path | None):  # noqa: ANN202 - Strings, imported lazily
    """The command line's words in the language of the config `init` writes: the scaffold's site.language, or
    with --from-jekyll the `lang` of the site's `_config.yml` (English without one, as feedpub reads it)."""
    from feedpub import jekyll
    from feedpub.config import SiteConfig
    from feedpub.strings import load_strings

    if jekyll_dir is None:
        language = tomllib.loads(scaffold.read_text(encoding="utf-8"))["site"]["language"]
    else:
        values, _ = jekyll.read_config(jekyll_dir)
        language = jekyll.settings(values).values["site"].get("language", SiteConfig.language)
    return load_strings("cli", str(language), None)


def _toml_from_jekyll(jekyll_dir: Path, directory: Path, t) -> str:  # noqa: ANN001 - Strings, imported lazily
    """A feedpub.toml naming the Jekyll site and nothing its `_config.yml` can say, so that the site stays the
    source: the file's values are read at every load. feedpub's own keys follow, commented out at their
    defaults (the scaffold's lines)."""
    from feedpub import jekyll

    _, problems = jekyll.read_config(jekyll_dir)
    if problems:
        fail(str(problems[0]))
    if not jekyll.config_files(jekyll_dir):
        fail(t.text("init_no_config_yml", folder=jekyll_dir))
    relative = Path(os.path.relpath(jekyll_dir.resolve(), directory.resolve())).as_posix()
    scaffold = (resources.files("feedpub") / "scaffold" / "feedpub.toml").read_text(encoding="utf-8")
    read = ", ".join([*jekyll.SITE_KEYS, "exclude", "collections_dir", "and jekyll-feed's feed: settings"])
    header = (f"Made by `feedpub init --from-jekyll {jekyll_dir}`. The Jekyll site stays the source: what its "
              f"_config.yml (then each _config.*.yml) sets is read at every build: {read}. A key set here wins "
              "over it (`feedpub check -v` says where each value comes from). Below, feedpub's own keys, "
              "commented out at their defaults. Relative paths are relative to this file's folder; secrets only "
              "ever come from the environment.")
    lines = [*(f"# {line}" for line in textwrap.wrap(header, 110, break_on_hyphens=False)), ""]
    return "\n".join(lines + _own_keys(scaffold, jekyll.FILLED_KEYS, {"site.jekyll_dir": json.dumps(relative)})) + "\n"


def _own_keys(scaffold: str, left_out: frozenset[str], values: dict[str, str]) -> list[str]:
    """The scaffold's sections from the first on: the keys of `values` first in their section, set to those; the
    ones in `left_out` dropped with their comments; every other one commented out."""
    lines: list[str] = []
    section, kept = "", True
    for line in scaffold[scaffold.index("\n[") + 1:].splitlines():
        key = re.match(r"(\w+) = ", line)
        if line.startswith("["):
            section, kept = line.split("]")[0].strip("["), True
            lines.append(line)
            lines += [f"{dotted.split('.')[-1]} = {value}" for dotted, value in values.items()
                      if dotted.rpartition(".")[0] == section]
        elif key:
            dotted = f"{section}.{key[1]}"
            kept = dotted not in left_out and dotted not in values
            if kept:
                lines.append(f"# {line}")
        elif line.startswith(" "):        # a key's comment continued below it, kept in its column
            if kept:
                lines.append(f"  {line}")
        else:
            lines.append(line)
    return lines


@click.command()
@click.option("--future", is_flag=True, help="Include posts dated in the future.")
@click.option("--drafts", is_flag=True, help="Include posts in _drafts/.")
@click.option("-v", "--verbose", is_flag=True, help="Also list every key of the Jekyll _config.yml, read or ignored.")
@click.pass_obj
def check(app: App, future: bool, drafts: bool, verbose: bool) -> None:
    """Read every post and render the ones the feeds show, as `build` does: print the problems `build` would
    report and exit as it would; write nothing."""
    # Imported in the command: at the top, YAML and Markdown would add 0.1 s to the start-up of every
    # command, --help and the no-op build included (python -X importtime -m feedpub --help).
    from feedpub.errors import ConfigError
    from feedpub.site.build import check_folders
    from feedpub.site.feeds import needed_posts, plan_feeds
    from feedpub.site.markup import render_posts
    from feedpub.site.output import folds_case
    from feedpub.site.posts import collect

    config = app.config
    if verbose and config.jekyll_root:
        _list_jekyll_keys(app, config.jekyll_root, config.given)
    output = config.output_dir.resolve()
    try:
        check_folders(config, output)
    except ConfigError as exc:
        fail(error_text(exc))
    collection = collect(config, future=future, drafts=drafts)
    feeds, plan_problems = plan_feeds(config, collection.posts, fold_case=folds_case(output))
    _, warnings = render_posts(config, needed_posts(feeds), site_posts=collection.posts)
    problems = sorted([*collection.problems, *plan_problems, *warnings], key=lambda p: (p.path, p.line or 0))
    report(problems)
    errors = sum(not p.warning for p in problems)
    t = words()
    summary = t.text("check_summary", posts=t.count("posts", len(collection.posts)),
                     problems=t.count("problems", errors), warnings=t.count("warnings", len(problems) - errors))
    skipped = collection.skipped_future + collection.skipped_drafts
    if skipped:
        summary += t.count("check_skipped", skipped, future=collection.skipped_future,
                           drafts=collection.skipped_drafts)
    for post, period in _late_posts(config, collection.posts):
        say(t.text("late_post", post=post.source, date=f"{post.date.astimezone(config.site.tz):%Y-%m-%d %H:%M}",
                   period=period), err=True)
    say(summary)
    raise SystemExit(PARTIAL if errors else OK)


def _late_posts(config: Config, posts: Sequence[Post]) -> list[tuple[Post, str]]:
    """The posts the next issue takes though an issue already covered their date, when there is a store
    to ask (`check` never creates one)."""
    from feedpub.send.dispatch import late_posts  # lazy: 0.3 s, as above
    from feedpub.store import StoreError, open_store

    if config.store_file is not None and not config.store_file.exists():
        return []
    try:
        store = open_store(config.store_url, migrate=False, create=False)   # `check` writes nothing
    except StoreError:
        return []
    try:
        return late_posts(config, store, posts, datetime.now(UTC))
    finally:
        store.engine.dispose()


def _list_jekyll_keys(app: App, root: Path, given: frozenset[str]) -> None:
    """Every `_config.yml` key: the feedpub key it fills (or that feedpub.toml sets instead), or why it is ignored."""
    from feedpub import jekyll
    from feedpub.errors import Message

    values, _ = jekyll.read_config(root)
    found = jekyll.settings(values)
    files = {key: path.name for key, path in jekyll.setting_files(root).items()}
    t, problems = app.strings, app.problems
    for key, target in found.used.items():
        # The feedpub keys a target names lead its English words: "feeds.tags, feeds.tag_atom_path (every …)".
        overridden = [name for name in str(target).split(", ") if name.split(" ")[0] in given]
        note = t.text("jekyll_key_wins", key=overridden[0].split(" ")[0]) if overridden else ""
        shown = problems.message(target) if isinstance(target, Message) else target
        click.echo(t.text("jekyll_key_read", file=files[str(key)], key=key, target=shown, note=note), err=True)
    for key, why in found.ignored.items():
        click.echo(t.text("jekyll_key_ignored", file=files[str(key)], key=key, why=problems.message(why)), err=True)

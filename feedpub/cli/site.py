"""`feedpub init` and `feedpub check`."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import click

from feedpub.cli import OK, PARTIAL, App, fail, report
from feedpub.templates import folder


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Scaffold feedpub.toml, posts/ and email_templates/ in DIRECTORY."""
    scaffold = resources.files("feedpub") / "scaffold"
    targets = {
        directory / "feedpub.toml": scaffold / "feedpub.toml",
        directory / "posts" / "2025-01-01-welcome.md": scaffold / "welcome.md",
    }
    templates = folder("email")
    if templates.is_dir():
        for item in templates.iterdir():
            if item.is_file() and not item.name.startswith("."):
                targets[directory / "email_templates" / item.name] = item
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        fail(f"{existing[0]}: already exists; init never overwrites (expected an empty folder)")
    (directory / "email_templates").mkdir(parents=True, exist_ok=True)
    for target, source in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, target.open("xb") as dst:
            shutil.copyfileobj(src, dst)
    click.echo(f"created {directory / 'feedpub.toml'}, {directory / 'posts'}/, "
               f"{directory / 'email_templates'}/")


@click.command()
@click.option("--future", is_flag=True, help="Include posts dated in the future.")
@click.option("--drafts", is_flag=True, help="Include posts in _drafts/.")
@click.pass_obj
def check(app: App, future: bool, drafts: bool) -> None:
    """Parse and render every post, print problems, write nothing."""
    # Imported in the command: at the top, YAML and Markdown would add 0.1 s to the start-up of every
    # command, --help and the no-op build included (python -X importtime -m feedpub --help).
    from feedpub.site.markup import render_posts
    from feedpub.site.posts import collect

    config = app.config
    collection = collect(config, future=future, drafts=drafts)
    _, warnings = render_posts(config, collection.posts)
    problems = sorted([*collection.problems, *warnings], key=lambda p: (p.path, p.line or 0))
    report(problems)
    errors = sum(not p.warning for p in problems)
    summary = f"{len(collection.posts)} posts, {errors} problems, {len(problems) - errors} warnings"
    skipped = collection.skipped_future + collection.skipped_drafts
    if skipped:
        summary += f", {skipped} skipped ({collection.skipped_future} future, {collection.skipped_drafts} draft)"
    click.echo(summary)
    raise SystemExit(PARTIAL if errors else OK)

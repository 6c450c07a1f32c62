"""`feedpub build`: write every feed into the output folder."""

from __future__ import annotations

from pathlib import Path

import click

from feedpub.cli import OK, PARTIAL, App, fail, report


@click.command()
@click.option("--future", is_flag=True, help="Include posts dated in the future.")
@click.option("--drafts", is_flag=True, help="Include posts in _drafts/.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: feeds.output_dir).")
@click.pass_obj
def build(app: App, future: bool, drafts: bool, output_dir: Path | None) -> None:
    """Write the Atom, RSS and JSON feeds, feeds.opml and feeds/index.html."""
    from feedpub.feeds import build_feeds
    from feedpub.output import output_problem, write_files
    from feedpub.posts import collect

    config = app.config
    output = (output_dir or config.output_dir).resolve()
    # Checked before anything is written: a wrong posts_dir must not replace good feeds with empty ones.
    if not config.posts_dir.is_dir():
        fail(f"{config.posts_dir}: posts folder does not exist (expected site.posts_dir to name a folder)")
    if output == config.posts_dir or config.posts_dir.is_relative_to(output):
        fail(f"{output}: output folder contains the posts (expected a separate feeds.output_dir)")
    problem = output_problem(output)
    if problem:
        fail(problem)

    collection = collect(config, future=future, drafts=drafts)
    result = build_feeds(config, collection.posts)
    try:
        written = write_files(output, result.files)
    except OSError as exc:
        fail(f"{exc.filename or output}: cannot write ({exc.strerror})")
    problems = [*collection.problems, *result.problems]
    report(problems)
    errors = sum(not p.warning for p in problems)
    click.echo(f"{len(collection.posts)} posts, {len(result.feeds)} feeds: {len(written.written)} files written, "
               f"{len(written.unchanged)} unchanged, {len(written.removed)} removed in {output}; "
               f"{errors} problems, {len(problems) - errors} warnings")
    raise SystemExit(PARTIAL if errors else OK)

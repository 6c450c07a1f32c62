"""`feedpub build`: write every feed into the output folder."""

from __future__ import annotations

from pathlib import Path

import click

from feedpub.cli import OK, PARTIAL, App, fail, report
from feedpub.errors import ConfigError


@click.command()
@click.option("--future", is_flag=True, help="Include posts dated in the future.")
@click.option("--drafts", is_flag=True, help="Include posts in _drafts/.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: feeds.output_dir).")
@click.option("--no-cache", is_flag=True, help="Ignore the build cache in .feedpub/cache (and rebuild it).")
@click.pass_obj
def build(app: App, future: bool, drafts: bool, output_dir: Path | None, no_cache: bool) -> None:
    """Write the Atom, RSS and JSON feeds, feeds.opml and feeds/index.html."""
    # Imported in the command: at the top it would add 0.14 s to `feedpub --help`, mostly for
    # feedpub.config, which --help never loads (python -X importtime -m feedpub --help).
    from feedpub.site.build import build_site

    try:
        result = build_site(app.config, output=output_dir, future=future, drafts=drafts, use_cache=not no_cache,
                            parallel=True)
    except ConfigError as exc:
        fail(str(exc))
    report(list(result.problems))
    click.echo(result.summary())
    raise SystemExit(PARTIAL if result.errors else OK)

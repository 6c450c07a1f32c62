"""`feedpub build`: write every feed into the output folder, once or on every change (`--watch`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import click

from feedpub.cli import FAILED, OK, PARTIAL, App, error_text, report, say, stop_on_signals, words
from feedpub.errors import ConfigError, FeedpubError

log = logging.getLogger("feedpub.build")


@click.command()
@click.option("--future", is_flag=True, help="Include posts dated in the future.")
@click.option("--drafts", is_flag=True, help="Include posts in _drafts/.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: feeds.output_dir).")
@click.option("--no-cache", is_flag=True, help="Ignore the build cache in .feedpub/cache (and rebuild it).")
@click.option("--watch", is_flag=True,
              help="Then rebuild whenever a post or the config file changes, until Ctrl-C (SIGINT/SIGTERM).")
@click.pass_obj
def build(app: App, future: bool, drafts: bool, output_dir: Path | None, no_cache: bool, watch: bool) -> None:
    """Write the Atom, RSS and JSON feeds, feeds.opml and feeds/index.html, and the digest archive (digests/)
    from the store; tell the WebSub hubs (feeds.websub_hub) which feeds changed."""
    # Imported in the command: at the top it would add 0.14 s to `feedpub --help`, mostly for
    # feedpub.config, which --help never loads (python -X importtime -m feedpub --help).
    from feedpub.site.build import build_site
    from feedpub.site.cache import forget_saved

    def once(config, announce, parallel: bool = True) -> int:  # noqa: ANN001 - Config and a callable, imported lazily
        try:
            result = build_site(config, output=output_dir, future=future, drafts=drafts, use_cache=not no_cache,
                                parallel=parallel)
        except ConfigError as exc:
            click.echo(f"feedpub: {error_text(exc)}", err=True)
            return FAILED
        report(list(result.problems))
        say(build_summary(words(), result))
        if config.feeds.websub_hub and result.written.written:
            # Imported once a build wrote something: it loads site.feeds (0.23 s), which a no-op build never does.
            from feedpub.site.websub import changed_feeds

            feeds = changed_feeds(config, result.written.written)
            if feeds:
                announce(config.feeds.websub_hub, feeds)
        archived = _write_archive(config, output_dir, use_cache=not no_cache)
        # What the fediverse accounts publish follows the site as published, never a preview elsewhere.
        published = _publish_fediverse(config) if output_dir is None and not (future or drafts) else True
        return PARTIAL if result.errors or not archived or not published else OK

    if not watch:
        code = once(app.config, _announce_now)
        forget_saved()
        raise SystemExit(code)

    from feedpub.site.watch import LiveConfig, follow
    from feedpub.site.websub import Publisher

    stop = threading.Event()
    stop_on_signals(stop, then="build_then")
    publisher = Publisher()
    live = LiveConfig(app.config, app.config_path)
    code = once(live.current, publisher.publish)
    say(app.strings.text("build_watching", posts=live.current.posts_dir,
                         config=app.config_path or app.strings.text("no_config_file")), err=True)
    for _batch in follow(live, stop):
        # In one process from here on: forking worker processes beside the watcher's and the publisher's
        # threads could copy a lock one of them holds.
        code = once(live.current, publisher.publish, parallel=False)
    publisher.close(timeout=10)
    raise SystemExit(code)


def _write_archive(config, output: Path | None, *, use_cache: bool) -> bool:  # noqa: ANN001 - Config, imported lazily
    """The digest archive from the store, beside the feeds (`digests/`); False when it could not be written
    (the feeds were)."""
    from feedpub.send.archive_sync import refresh  # lazy: see `once` above

    try:
        archived = refresh(config, output=output, use_cache=use_cache)
    except FeedpubError as exc:
        click.echo(f"feedpub: {error_text(exc)}", err=True)
        return False
    except OSError as exc:
        click.echo(f"feedpub: {words().text('archive_unwritable', file=exc.filename, reason=exc.strerror)}", err=True)
        return False
    if archived.issues:
        say(archive_summary(words(), archived))
    return True


def _publish_fediverse(config) -> bool:  # noqa: ANN001 - Config, imported lazily
    """Queue the fediverse accounts' new, edited and removed posts (the daemon or a worker delivers them); False
    when the store could not be used (the feeds were written)."""
    if not config.activitypub.enabled:
        return True
    from feedpub.cli.fediverse import published_line
    from feedpub.fediverse.publish import publish  # lazy: sqlalchemy, which a build without the store never loads
    from feedpub.store import open_store

    try:
        store = open_store(config.store_url)
        try:
            published = publish(config, store)
        finally:
            store.engine.dispose()
    except FeedpubError as exc:
        click.echo(f"feedpub: {error_text(exc)}", err=True)
        return False
    if published.changed:
        say(published_line(words(), published))
    return True


def archive_summary(t, archived) -> str:  # noqa: ANN001 - Strings and feedpub.send.archive_sync.Archived, lazily
    """What writing the digest archive did, in the language of `t`."""
    return t.text("archive_summary", issues=t.count("issues", archived.issues),
                  files=t.count("files", len(archived.written)), unchanged=archived.unchanged)


def build_summary(t, result) -> str:  # noqa: ANN001 - Strings and feedpub.site.build.BuildReport, imported lazily
    """What the build did, in the language of `t`."""
    written = result.written
    return t.text("build_summary", posts=t.count("posts", result.posts), feeds=t.count("feeds", result.feeds),
                  files=t.count("files", len(written.written)), unchanged=len(written.unchanged),
                  removed=len(written.removed), output=result.output, problems=t.count("problems", result.errors),
                  warnings=t.count("warnings", len(result.problems) - result.errors))


def _announce_now(hubs: tuple[str, ...], feeds: tuple[str, ...]) -> None:
    """A one-off build (cron) tells the hubs before it exits, trying briefly: a hub that is down is
    logged as a warning (stderr; `-q` hides it) and does not change the exit code (the feeds were written)."""
    from feedpub.site.websub import FOREGROUND, ping  # lazy: see `once` above

    for hub in hubs:
        found = ping(hub, feeds, FOREGROUND)
        (log.info if found.ok else log.warning)("%s", found.words())

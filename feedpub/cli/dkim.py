"""`feedpub dkim keygen`: a key for `[smtp.dkim]`, and the DNS record that publishes it.

keygen needs no config: the config may already name the key file it is about to write (and a config
naming a missing key does not load). It speaks site.language when the config loads, else English.
"""

from __future__ import annotations

from pathlib import Path

import click

from feedpub.cli import App, fail, say
from feedpub.errors import reason


@click.group()
def dkim() -> None:
    """DKIM keys for signing the mail feedpub sends ([smtp.dkim])."""


@dkim.command()
@click.option("--selector", default="feedpub", show_default=True,
              help="Names the key in DNS (SELECTOR._domainkey.DOMAIN); a new one for each new key.")
@click.option("--domain", default="", help="The signing domain (d=), e.g. blog.example.com; without it the "
              "record's name is relative to your zone.")
@click.option("--bits", type=click.IntRange(1024, 4096), default=2048, show_default=True, help="RSA key size.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key (mode 0600, never overwritten; a missing folder is made 0700)  "
              "[default: dkim-SELECTOR.key]")
@click.pass_obj
def keygen(app: App, selector: str, domain: str, bits: int, output: Path | None) -> None:
    """Write a new private key and print the DNS TXT record to publish."""
    # Imported here, as in the other command modules: feedpub.config costs ~26 ms of start-up that
    # `feedpub --help` does not need.
    from feedpub.config_file import check_dns_name
    from feedpub.send.dkim import dns_record, new_key, write_private_key

    t = app.strings_without_config()
    for option, value in (("--selector", selector), ("--domain", domain)):
        try:
            check_dns_name(value)
        except ValueError as exc:
            fail(t.text("dkim_bad_option", option=option,
                        reason=app.strings_without_config("problems").message(reason(exc))))
    output = output or Path(f"dkim-{selector}.key")
    private, public = new_key(bits)
    try:
        # The folder too is the owner's alone (an existing one is left as it is).
        output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_key(output, private)
    except FileExistsError:
        fail(t.text("dkim_key_exists", output=output))
    except OSError as exc:
        fail(t.text("dkim_cannot_write", output=output, reason=exc.strerror))
    click.echo(dns_record(selector, domain, public))
    say(f"{t.text('dkim_written', output=output, bits=bits)}\n[smtp.dkim]\n"
        f"domain = \"{domain or t.text('your_domain')}\"\nselector = \"{selector}\"\nkey_file = \"{output.resolve()}\"",
        err=True)

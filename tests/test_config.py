from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.config import Config, MissingSecret, ScheduleEntry
from feedpub.config_file import load_config
from feedpub.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feedpub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_key_is_optional(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.feeds.formats == ("atom", "rss", "json")
    assert config.feeds.limit == 20
    assert config.digest.schedule == (ScheduleEntry((0,), time(9, 0)),)
    assert config.smtp.port == 587
    assert config.root == tmp_path.resolve()


def test_design_example_keys_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '''
[site]
title = "ALLFORCES"
url = "https://blog.example.com"
language = "ja"
timezone = "Asia/Tokyo"
author = "ALLFORCES編集部"
permalink = "/:categories/:year/:month/:day/:title:output_ext"
[feeds]
formats = ["atom", "json"]
websub_hub = "https://hub.example.com/"
[feeds.slugs]
"AI導入戦略" = "ai-strategy"
[digest]
schedule = ["mon 09:00", "thu 09:00"]
from = "ALLFORCES <news@blog.example.com>"
[smtp]
rate_per_second = 10
[store]
url = "sqlite:///.feedpub/feedpub.db"
'''))
    assert config.site.tz.key == "Asia/Tokyo"
    assert config.feeds.slugs == {"AI導入戦略": "ai-strategy"}
    assert config.digest.schedule == (ScheduleEntry((0,), time(9, 0)), ScheduleEntry((3,), time(9, 0)))
    assert config.digest.from_ == "ALLFORCES <news@blog.example.com>"
    assert config.smtp.rate_per_second == 10.0
    assert config.store_url == f"sqlite:///{tmp_path.resolve()}/.feedpub/feedpub.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[site]\ntitle = "x"\ntitel = "y"\n', "feedpub.toml:3: unknown key 'site.titel' (expected one of title,"),
        ("[feeds]\nlimit = \"20\"\n", "feedpub.toml:2: 'feeds.limit': expected an integer, got a string"),
        ('[site]\ntimezone = "Mars/Base"\n', "feedpub.toml:2: 'site.timezone': unknown time zone 'Mars/Base'"),
        ('[feeds]\nformats = ["atom", "rdf"]\n', "feedpub.toml:2: 'feeds.formats': 'rdf' is not one of"),
        ('[digest]\nschedule = "0 9 * * 1"\n', "feedpub.toml:2: 'digest.schedule': '0 9 * * 1' is not a day name"),
        ("[smtps]\nhost = 'x'\n", "feedpub.toml:1: unknown section [smtps]"),
        ("[site\n", "feedpub.toml:1: invalid TOML"),
        ('[site]\nurl = "blog.example.com"\n', "feedpub.toml:2: 'site.url': 'blog.example.com' is not an absolute"),
        ('[site]\nurl = "https://blog.example.com"\n[store]\nurl = "mysql://x"\n',
         "feedpub.toml:4: 'store.url': 'mysql://x' is not a supported store (expected 'sqlite:///PATH' or "
         "'postgresql://USER@HOST/DB'"),
        ('[digest]\nfrom = "not an address"\n', "feedpub.toml:2: 'digest.from': 'not an address': 'not' is not a "
         "valid e-mail address"),
        ('[digest]\nfrom = "ALLFORCES <news@blog>"\n', "feedpub.toml:2: 'digest.from': 'ALLFORCES <news@blog>': "
         "'news@blog' is not a valid e-mail address"),
        ('[digest]\nfrom = "a@example.com, b@example.com"\n', "feedpub.toml:2: 'digest.from': 'a@example.com, "
         "b@example.com' is not one address"),
        ('[digest]\nfrom = "News <news@example.com>\\r\\nBcc: victim@example.com"\n',
         "feedpub.toml:2: 'digest.from': 'News <news@example.com>\\r\\nBcc: victim@example.com' holds a line break"),
        ('[digest]\nsubject = "{{ site.title }"\n', "feedpub.toml:2: 'digest.subject': template error: unexpected '}'"),
        ('[web]\nunsubscribe_mailto = "unsubscribe@"\n', "feedpub.toml:2: 'web.unsubscribe_mailto': "
         "'unsubscribe@' is not a valid e-mail address"),
        ('[feeds]\nwebsub_hub = ["https://hub.example.com/", "hub.example.com"]\n',
         "feedpub.toml:2: 'feeds.websub_hub': 'hub.example.com' is not an absolute http(s) URL"),
        ('[feeds]\nwebsub_hub = 3\n', "feedpub.toml:2: 'feeds.websub_hub': expected a URL or a list of URLs"),
        ('[web]\nunsubscribe_mailto = "u@example.com>\\r\\nBcc: victim@example.com"\n',
         "feedpub.toml:2: 'web.unsubscribe_mailto': 'u@example.com>\\r\\nBcc: victim@example.com' cannot stand in"),
        ('[smtp]\nport = 25\n\n[smtp.dkim]\ndomain = "blog.example.com"\n\nsigner = "x"\n',
         "feedpub.toml:7: unknown key 'smtp.dkim.signer' (expected one of domain, selector, key_file)"),
        ('[smtp.dkim]\ndomain = "blog.example.com"\nselector = "2026年"\n',
         "feedpub.toml:3: 'smtp.dkim.selector': '2026年' is not a DNS name"),
        ('[smtp]\ndkim = "blog.example.com"\n', "feedpub.toml:2: 'smtp.dkim' must be a table ([smtp.dkim])"),
        ('[bounces]\nsoft_limit = 3\nmax_complaint_rate = 0.3\nmax_bounce_rate = 5\n',
         "feedpub.toml:4: 'bounces.max_bounce_rate': 5.0 is not a share of the messages sent (expected more than 0 "
         "and at most 1, e.g. 0.003 for 0.3%)"),
        ('[smtp.dkim]\nselector = "feedpub"\nkey_file = "dkim.key"\n',
         "feedpub.toml:1: [smtp.dkim]: 'smtp.dkim.domain' not set (expected domain, selector and key_file all set"),
    ],
)
def test_bad_config_names_file_line_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert str(error.value).startswith(str(tmp_path / message.split(":")[0]) + ":" + message.split(":", 1)[1])


def test_websub_hub_is_one_url_or_a_list(tmp_path: Path) -> None:
    one = load_config(write(tmp_path, '[feeds]\nwebsub_hub = "https://hub.example.com/"\n'))
    assert one.feeds.websub_hub == ("https://hub.example.com/",)
    several = load_config(write(tmp_path, '[feeds]\nwebsub_hub = ["https://a.example/hub", "http://127.0.0.1:9/"]\n'))
    assert several.feeds.websub_hub == ("https://a.example/hub", "http://127.0.0.1:9/")
    assert load_config(write(tmp_path, '[feeds]\nwebsub_hub = ""\n')).feeds.websub_hub == ()


def test_bad_config_exits_2_from_the_cli(tmp_path: Path) -> None:
    write(tmp_path, "[feeds]\nlimit = true\n")
    result = subprocess.run([sys.executable, "-m", "feedpub", "check"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "feedpub.toml:2: 'feeds.limit': expected an integer, got true or false" in result.stderr


def test_sender_settings_that_load_are_the_ones_mail_can_carry(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '''
[digest]
from = "ALLFORCES編集部 <news@blog.example.com>"
subject = "{{ site.title }} 週刊 — {{ issue.date }}"
[store]
url = "postgresql://feedpub@db.example.com/feedpub"
[web]
unsubscribe_mailto = "mailto:unsubscribe@blog.example.com?subject=unsubscribe"
'''))
    assert config.digest.from_ == "ALLFORCES編集部 <news@blog.example.com>"
    assert config.web.unsubscribe_mailto == "mailto:unsubscribe@blog.example.com?subject=unsubscribe"
    for url in ("sqlite:///feedpub.db", "sqlite:////var/lib/feedpub.db", "postgresql+psycopg://u@h/db"):
        assert load_config(write(tmp_path, f'[store]\nurl = "{url}"\n')).store.url == url


@pytest.mark.parametrize("command", [["check"], ["digest", "preview"], ["digest", "send", "--dry-run"]])
def test_a_bad_sender_stops_every_command_before_it_starts(tmp_path: Path, command: list[str]) -> None:
    write(tmp_path, '[site]\ntitle = "x"\n[digest]\nfrom = "not an address"\n')
    (tmp_path / "posts").mkdir()
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "feedpub.toml"), *command],
                                env={"FEEDPUB_SECRET": "s"})
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'feedpub.toml'}:4: 'digest.from': 'not an address'" in result.stderr
    assert "(expected e.g. 'ALLFORCES編集部 <news@blog.example.com>')" in result.stderr


def test_secrets_come_only_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config()
    monkeypatch.delenv("FEEDPUB_SECRET", raising=False)
    with pytest.raises(MissingSecret, match="FEEDPUB_SECRET is not set"):
        config.web.secret()
    monkeypatch.setenv("FEEDPUB_SECRET", "s3cret")
    assert config.web.secret() == "s3cret"


def test_init_scaffolds_a_working_site_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "blog"
    first = subprocess.run([sys.executable, "-m", "feedpub", "init", str(target)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert (target / "feedpub.toml").is_file() and (target / "posts").is_dir()
    assert (target / "email_templates").is_dir()
    assert load_config(target / "feedpub.toml").site.title == "My blog"
    check = subprocess.run([sys.executable, "-m", "feedpub", "check"], cwd=target, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("1 post, 0 problems")

    (target / "feedpub.toml").write_text("# mine\n", encoding="utf-8")
    again = subprocess.run([sys.executable, "-m", "feedpub", "init", str(target)], capture_output=True, text=True)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert (target / "feedpub.toml").read_text(encoding="utf-8") == "# mine\n"


def test_the_scaffold_documents_every_key() -> None:
    import dataclasses
    from importlib import resources

    text = (resources.files("feedpub") / "scaffold" / "feedpub.toml").read_text(encoding="utf-8")
    config = Config()
    for section in ("site", "feeds", "digest", "smtp", "store", "web", "bounces"):
        assert f"[{section}]" in text
        tables = [(section, getattr(config, section))]
        for table, values in tables:
            for field in dataclasses.fields(values):
                name, value = field.name.rstrip("_"), getattr(values, field.name)
                if dataclasses.is_dataclass(value):     # a nested table such as [smtp.dkim]
                    assert f"[{table}.{name}]" in text
                    tables.append((f"{table}.{name}", value))
                elif not field.name.startswith("_"):
                    assert f"\n{name} = " in text or f'\n# "{name}' in text or name == "slugs", f"{table}.{name}"

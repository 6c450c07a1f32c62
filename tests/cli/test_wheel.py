"""The wheel carries everything an operator's `pip install` needs: templates, assets, the scaffold."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_installed_wheel_inits_builds_and_previews_from_its_own_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                    str(REPO)], check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("feedpub-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "feedpub/email_templates/digest.html.j2" in names
    target = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    # The installed copy comes first on the path, ahead of the checkout's editable install; -P keeps the
    # working folder off it.
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    probe = subprocess.run([sys.executable, "-c", "import feedpub; print(feedpub.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(target))

    init = run("init", "blog", cwd=tmp_path, env=env)
    assert init.returncode == 0, init.stderr
    blog = tmp_path / "blog"
    built = run("build", cwd=blog, env=env)
    assert built.returncode == 0, built.stderr
    assert (blog / "public" / "feed.xml").read_bytes().startswith(b"<?xml")
    preview = run("digest", "preview", "--since", "2000-01-01", "--output", str(tmp_path / "preview.html"),
                  cwd=blog, env=env)
    assert preview.returncode == 0, preview.stderr
    assert "<html" in (tmp_path / "preview.html").read_text(encoding="utf-8")

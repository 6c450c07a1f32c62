"""The bytes feedpub publishes do not change by accident: `feedpub build` of the sample site (posts/ with
the repository's feedpub.toml) and of a generated 300-post corpus is compared file by file (sha256)
with the manifests in tests/site/golden/. After an intended change of output, regenerate them with
`FEEDPUB_GOLDEN_UPDATE=1 pytest tests/site/test_golden.py` and say why in the commit."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(REPO / "bench"))
import generate  # noqa: E402 - bench/generate.py: the deterministic corpus


def build(root: Path) -> dict[str, str]:
    """`feedpub build` in `root`; sha256 of every file it published, by path."""
    result = subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=root, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    public = root / "public"
    return {path.relative_to(public).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(public.rglob("*")) if path.is_file()}


def compare(name: str, hashes: dict[str, str]) -> None:
    manifest = GOLDEN / f"{name}.sha256"
    text = "".join(f"{digest}  {path}\n" for path, digest in sorted(hashes.items()))
    if os.environ.get("FEEDPUB_GOLDEN_UPDATE"):
        manifest.write_text(text, encoding="utf-8")
    expected = dict(reversed(line.split("  ", 1)) for line in manifest.read_text(encoding="utf-8").splitlines())
    assert sorted(hashes) == sorted(expected), "the set of published files changed"
    changed = [path for path in hashes if hashes[path] != expected[path]]
    assert not changed, f"published bytes changed: {changed}"


def test_sample_site_publishes_the_golden_bytes(tmp_path: Path) -> None:
    shutil.copytree(REPO / "posts", tmp_path / "posts")
    shutil.copy(REPO / "feedpub.toml", tmp_path / "feedpub.toml")
    compare("sample", build(tmp_path))


@pytest.mark.parametrize("posts", [300])
def test_generated_corpus_publishes_the_golden_bytes(tmp_path: Path, posts: int) -> None:
    generate.generate(tmp_path, posts=posts, categories=12, tags=40, size_kb=2, seed=7)
    compare(f"corpus{posts}", build(tmp_path))

"""The feed content of the posts in fixtures/jekyll_parity (English and Japanese, every kramdown feature
feedpub imitates) reads as Jekyll + jekyll-feed publish it: bench/jekyll_compare.py builds the fixture
with Debian's jekyll and with feedpub and compares each post's text. Skipped without jekyll, except
under CI=true, where .ci/run installs it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "jekyll_parity"
sys.path.insert(0, str(REPO / "bench"))
import jekyll_compare  # noqa: E402 - bench/jekyll_compare.py: the comparison `make bench-jekyll` runs


@pytest.fixture(scope="module")
def report() -> jekyll_compare.Report:
    if shutil.which("jekyll") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jekyll is missing: .ci/run installs jekyll and ruby-jekyll-feed")
        pytest.skip("jekyll is not installed (apt-get install jekyll ruby-jekyll-feed)")
    return jekyll_compare.compare_site(FIXTURE)


def test_every_post_reads_as_jekyll_publishes_it(report: jekyll_compare.Report) -> None:
    assert len(report.comparisons) == len(list((FIXTURE / "_posts").glob("*.md")))
    assert report.only_jekyll == report.only_feedpub == []
    worst = min(report.comparisons, key=lambda c: c.ratio)
    assert report.share_at_least(0.98) == 1.0, (worst.url, jekyll_compare.differences(worst.jekyll_text,
                                                                                       worst.feedpub_text))
    assert not [c.url for c in report.comparisons if c.liquid_leaked or c.paragraphs_missing]
    # Headers, paragraphs, lists, quotes and tables nested as Jekyll nests them, not only the same words.
    assert not [(c.url, c.outline_difference) for c in report.comparisons if c.outline_difference]


def test_the_comparison_sees_a_difference() -> None:
    """The measure itself: text that differs scores below the threshold, and the place is shown."""
    jekyll = jekyll_compare.Entry("u", "t", "<p>She said, “hi” – and left…</p>")
    plain = jekyll_compare.Entry("u", "t", "<p>She said, \"hi\" -- and left...</p>")
    comparison = jekyll_compare.compare_entry(jekyll, plain)
    assert comparison.ratio < 0.98
    assert "[-“-]{+\"+}" in "\n".join(jekyll_compare.differences(comparison.jekyll_text, comparison.feedpub_text))
    spans = jekyll_compare.Entry("u", "t", '<pre><code><span class="nb">puts</span><span>(</span>1)</code></pre>')
    assert jekyll_compare.normalised_text(spans.content) == "puts(1)"

"""A reader's categories choose posts whatever their case: `releases` reaches the posts of `Releases`."""

from __future__ import annotations

from feedpub.send.issue import render_variant, variant_key
from tests.send.test_issue import add_posts, config_for, issue_for


def test_a_category_chosen_in_another_case_still_chooses_its_posts(site):
    config = config_for(site)
    add_posts(site)
    issue = issue_for(site, config)
    shouting = render_variant(config, issue, variant_key(["categories/ENGINEERING"]))
    assert shouting is not None and "Deploying with" in shouting.text and "生成AIと著作権" not in shouting.text

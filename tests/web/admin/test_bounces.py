"""Bounces and complaints on the dashboard: recorded by the real processing code (a Postfix DSN, an ARF
complaint, a DSN written here), then read as an operator reads them: counts and rates per issue, the
reasons on the issue's and the subscriber's pages, the list by kind and by page, the message itself."""

from __future__ import annotations

import re

from feedpub.records import SubscriberInput
from feedpub.schema import deliveries, subscribers
from feedpub.send.bounces.process import process_message
from feedpub.web.admin.queries import PAGE_SIZE
from tests.web.admin.conftest import FIXTURES, PERIOD, dsn, login, returned, verp_config

SCRIPT = "<script>alert(1)</script>"


def record_three(site, store) -> dict[str, int]:
    """Alice, Taro and Carol got the issue; Carol's server refused it for good, Taro's mailbox is full (a
    diagnostic carrying markup), Alice complained. Evidence ids by reader."""
    with store.writing() as conn:
        sent = subscribers.c.email.in_(["taro@example.jp", "carol@example.com"])
        conn.execute(deliveries.update().where(deliveries.c.subscriber_id.in_(
            subscribers.select().with_only_columns(subscribers.c.id).where(sent))).values(status="sent"))
    config = verp_config(site)
    hard = returned(config, store, (FIXTURES / "postfix-user-unknown.eml").read_bytes(), "carol@example.com",
                    about="taro.yamada@example.jp")
    soft = returned(config, store, dsn("taro@example.jp", "4.2.2", f"452 4.2.2 {SCRIPT} mailbox full", "full@mx"),
                    "taro@example.jp")
    complaint = returned(config, store, (FIXTURES / "arf-abuse.eml").read_bytes(), "alice@example.com",
                         about="mina@mailbox.example")
    assert [(o.kind, o.effect) for o in hard + soft + complaint] == [
        ("hard", "suppressed"), ("soft", "counted: soft bounce 1 of 3 within 30d"),
        ("complaint", "unsubscribed and suppressed (complaint)")]
    return {"carol": hard[0].evidence_id, "taro": soft[0].evidence_id, "alice": complaint[0].evidence_id}


def test_overview_and_issue_count_bounced_and_complained_deliveries_with_rates_of_sent(site, dashboard) -> None:
    record_three(site, dashboard.store)
    login(dashboard.client)
    overview = dashboard.client.get("/admin").text
    assert '<th class="n" title="送信済みのうち、バウンスの届いた配信">バウンス</th>' in overview
    # 3 sent (Alice, Taro, Carol): 2 bounced, 1 complained.
    assert '2 <span class="muted">66.7%</span>' in overview and '1 <span class="muted">33.3%</span>' in overview
    issue = dashboard.client.get(f"/admin/issues/{PERIOD}").text
    assert "バウンス<b>2</b>" in issue and "送信済みの 66.7%" in issue and "苦情<b>1</b>" in issue


def test_issue_page_gives_each_bounce_its_reason_escaped(site, dashboard) -> None:
    ids = record_three(site, dashboard.store)
    login(dashboard.client)
    page = dashboard.client.get(f"/admin/issues/{PERIOD}").text
    assert "550 no such user" in page                                   # the synchronous failure, as before
    assert "550 5.1.1 &lt;carol@example.com&gt;: Recipient address rejected: User unknown" in page
    assert "5.1.1" in page and "4.2.2" in page and ">苦情<" in page and ">ハードバウンス<" in page
    assert "452 4.2.2 &lt;script&gt;alert(1)&lt;/script&gt; mailbox full" in page and SCRIPT not in page
    for evidence_id in ids.values():
        assert f'href="/admin/bounces/{evidence_id}"' in page
    # Newest first: the complaint came last.
    assert page.index(f"/admin/bounces/{ids['alice']}") < page.index(f"/admin/bounces/{ids['carol']}")


def test_subscriber_page_shows_that_address_bounces_and_complaints(site, dashboard) -> None:
    record_three(site, dashboard.store)
    login(dashboard.client)
    pages = {email: dashboard.client.get(f"/admin/subscribers/{dashboard.store.subscriber(email).id}").text
             for email in ("carol@example.com", "alice@example.com", "bob@example.com")}
    assert "User unknown in" in pages["carol@example.com"] and ">suppressed<" in pages["carol@example.com"]
    assert "unsubscribed and suppressed (complaint)" in pages["alice@example.com"]
    assert "User unknown in" not in pages["alice@example.com"]
    bob = pages["bob@example.com"]
    assert re.search(r'バウンスと苦情</h2>\s*<p class="muted">ありません。</p>', bob)


def test_bounces_page_lists_newest_first_filters_by_kind_and_links_the_raw_message(site, dashboard) -> None:
    ids = record_three(site, dashboard.store)
    client = dashboard.client
    login(client)
    listed = client.get("/admin/bounces").text
    assert [int(n) for n in re.findall(r'href="/admin/bounces/(\d+)"', listed)] == [
        ids["alice"], ids["taro"], ids["carol"]]
    assert "&lt;script&gt;" in listed and SCRIPT not in listed and f'href="/admin/issues/{PERIOD}"' in listed
    complaints = client.get("/admin/bounces?kind=complaint").text
    assert re.findall(r'href="/admin/bounces/(\d+)"', complaints) == [str(ids["alice"])]
    assert "ハードバウンスの記録はありません。" not in complaints and "<strong>苦情</strong>" in complaints
    assert "自動返信の記録はありません。" in client.get("/admin/bounces?kind=auto-reply").text
    unknown = client.get("/admin/bounces", params={"kind": SCRIPT}).text      # not a kind: everything, unechoed
    assert len(re.findall(r'href="/admin/bounces/(\d+)"', unknown)) == 3 and SCRIPT not in unknown

    shown = client.get(f"/admin/bounces/{ids['carol']}").text
    assert "Final-Recipient: rfc822; carol@example.com" in shown and '<pre class="raw">' in shown
    assert "Diagnostic-Code: smtp; 550 5.1.1 &lt;carol@example.com&gt;: Recipient address" in shown
    assert "<td>suppressed</td>" in shown and f'href="/admin/issues/{PERIOD}"' in shown
    escaped = client.get(f"/admin/bounces/{ids['taro']}").text
    assert SCRIPT not in escaped
    assert "Diagnostic-Code: smtp; 452 4.2.2 &lt;script&gt;alert(1)&lt;/script&gt;" in escaped
    assert client.get("/admin/bounces/999999").status_code == 404


def test_bounces_page_goes_back_a_page_at_a_time(site, dashboard) -> None:
    store = dashboard.store
    config = verp_config(site)
    store.save_subscribers([SubscriberInput(f"reader{i:02d}@example.org") for i in range(PAGE_SIZE + 1)],
                           status="active")
    for i in range(PAGE_SIZE + 1):     # no VERP tag: recorded as unverified, nothing done
        process_message(config, store, dsn(f"reader{i:02d}@example.org", "5.1.1", "550 5.1.1 gone", f"m{i}@mx",
                                           action="failed"), "test")
    login(dashboard.client)
    first = dashboard.client.get("/admin/bounces").text
    links = re.findall(r'href="/admin/bounces/(\d+)"', first)
    assert len(links) == PAGE_SIZE and "reader50@example.org" in first and "reader00@example.org" not in first
    older = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = dashboard.client.get(older).text
    assert re.findall(r'href="/admin/bounces/(\d+)"', second) == [str(min(map(int, links)) - 1)]
    assert "reader00@example.org" in second and 'rel="next"' not in second and "« 最新" in second
    hard = dashboard.client.get("/admin/bounces?kind=hard").text
    assert 'rel="next" href="/admin/bounces?kind=hard&amp;before=' in hard


def test_unverified_evidence_is_marked_on_the_list_and_its_page(site, dashboard) -> None:
    ids = record_three(site, dashboard.store)
    forged = process_message(verp_config(site), dashboard.store,
                             dsn("bob@example.com", "5.1.1", "550 5.1.1 gone", "forged@mx", action="failed"), "test")
    assert [o.effect.split(":")[:2] for o in forged] == [["none", " unverified"]]
    login(dashboard.client)
    listed = dashboard.client.get("/admin/bounces").text
    rows = {int(n): row for row in listed.split("<tr>")[2:] for n in re.findall(r'href="/admin/bounces/(\d+)"', row)}
    assert "（未確認）" in rows[forged[0].evidence_id]
    assert all("(unverified)" not in rows[evidence_id] for evidence_id in ids.values())
    shown = dashboard.client.get(f"/admin/bounces/{forged[0].evidence_id}").text
    assert "ハードバウンス （未確認：このメッセージが指すメールを feedpub が送った記録がない" in shown
    assert dashboard.store.suppression("bob@example.com") is None

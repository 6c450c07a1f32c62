"""The wing's HTTP endpoints, mounted by `feedpub.web.app` when `[activitypub] enabled = true`: WebFinger,
NodeInfo, the actors (content-negotiated: ActivityPub JSON, or a redirect to the blog for a browser), their
outboxes and followers, each post's object, and the inboxes. The I/O edge of the wing: store work, reading the
site and rendering run in threads, fetches are async; the documents themselves come from the pure modules.

An inbox answers 413 past MAX_BODY bytes, 400 for what is not an activity, 401 for a request whose signature
does not verify with its keyId's key (or whose key cannot be fetched, or whose signer is not the activity's
actor), 403 when the actor's or the key's host is blocked, 404 for an account we do not have, and 202 for the
rest, acted on or dropped. Nothing is recorded before the signature verifies.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from feedpub.config import Config
from feedpub.fediverse import actors, inbox, nodeinfo, objects, signatures, urls, webfinger
from feedpub.fediverse.delivery import deliver
from feedpub.fediverse.keys import INSTANCE
from feedpub.fediverse.ledger import Ledger, add_follower_in, lock_follower
from feedpub.fediverse.negotiation import ACTIVITY_JSON, wants_activity_json
from feedpub.fediverse.queue import enqueue_in, queued_before
from feedpub.fediverse.remote import FetchRefused, Remote, RemoteActor, check_address
from feedpub.fediverse.site import SitePosts
from feedpub.store import Store
from feedpub.strings import operator_strings

log = logging.getLogger("feedpub.fediverse")

MAX_BODY = 256 * 1024        # Mastodon's own inbox limit is 1 MB; an activity for a blog is a few kB
PAGE_SIZE = 20               # outbox items per page


class Fediverse:
    """What the endpoints share (`app.state.fediverse`)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.ledger = Ledger(store)
        self.site = SitePosts(config)
        self._remote: Remote | None = None
        self._delivering = threading.Lock()
        self._again = threading.Event()
        self.words = operator_strings(config, "cli")     # its log lines, in site.language as the daemon's
        # What an inbox calls once it queued an Accept: the daemon sets its sender's wake-up here; an app served
        # without one (tests, an embedding) sends from this process.
        self.queued: Callable[[], None] = self.deliver_queued

    async def remote(self) -> Remote:
        if self._remote is None:
            key = await run_in_threadpool(self.ledger.key_pair, INSTANCE)
            self._remote = self._remote or Remote(self.config, key)
        return self._remote

    def deliver_queued(self) -> None:
        """Send what is queued (an Accept just queued, and whatever else is due), one run at a time in this
        process; a call while one runs makes it go round once more. Other processes claim their own rows."""
        self._again.set()
        if not self._delivering.acquire(blocking=False):
            return
        try:
            while self._again.is_set():
                self._again.clear()
                summary = deliver(self.config, self.store)
                log.info("%s", self.words.text("fediverse_web_sending", counts=summary.line(self.words)))
        finally:
            self._delivering.release()


class ActivityJSON(JSONResponse):
    media_type = ACTIVITY_JSON


def routes() -> list[Route]:
    # GET (and with it HEAD) only shows; inboxes take POST only.
    return [
        Route("/.well-known/webfinger", finger, methods=["GET"]),
        Route("/.well-known/nodeinfo", nodeinfo_links, methods=["GET"]),
        Route(nodeinfo.PATH, nodeinfo_document, methods=["GET"]),
        Route(urls.INSTANCE_ACTOR_PATH, instance_actor, methods=["GET"]),
        Route(urls.INSTANCE_ACTOR_PATH + "/outbox", instance_outbox, methods=["GET"]),
        Route(urls.SHARED_INBOX_PATH, shared_inbox, methods=["POST"]),
        Route(urls.ACCOUNTS_PATH + "{name}", actor, methods=["GET"]),
        Route(urls.ACCOUNTS_PATH + "{name}/inbox", account_inbox, methods=["POST"]),
        Route(urls.ACCOUNTS_PATH + "{name}/outbox", outbox, methods=["GET"]),
        Route(urls.ACCOUNTS_PATH + "{name}/followers", followers, methods=["GET"]),
        Route(objects.OBJECTS_PATH + "{key}", post_object, methods=["GET"]),
    ]


def _fediverse(request: Request) -> Fediverse:
    return request.app.state.fediverse


# -- discovery -------------------------------------------------------------------------------------------------


async def finger(request: Request) -> Response:
    fed = _fediverse(request)
    resource = request.query_params.get("resource", "")
    if not resource:
        return PlainTextResponse("resource is missing (expected ?resource=acct:NAME@HOST)\n", 400)
    snapshot = await run_in_threadpool(fed.site.snapshot)
    account = webfinger.account_named(fed.config, resource, snapshot.accounts)
    if account is not None:
        found = webfinger.jrd(fed.config, account)
    elif webfinger.names_instance(fed.config, resource):
        found = webfinger.instance_jrd(fed.config)
    else:
        return PlainTextResponse(f"no account {resource} here\n", 404)
    return JSONResponse(found, media_type=webfinger.JRD, headers={"Access-Control-Allow-Origin": "*"})


async def nodeinfo_links(request: Request) -> Response:
    return JSONResponse(nodeinfo.discovery(_fediverse(request).config), headers={"Access-Control-Allow-Origin": "*"})


async def nodeinfo_document(request: Request) -> Response:
    fed = _fediverse(request)
    snapshot = await run_in_threadpool(fed.site.snapshot)
    document = nodeinfo.document(fed.config, accounts=len(snapshot.accounts), posts=len(snapshot.posts))
    return JSONResponse(document, media_type=nodeinfo.MEDIA_TYPE, headers={"Access-Control-Allow-Origin": "*"})


# -- actors and collections ------------------------------------------------------------------------------------


async def instance_actor(request: Request) -> Response:
    fed = _fediverse(request)
    if not wants_activity_json(request.headers.get("accept", "")):
        return _to_blog(fed.config.site.root_url + "/")
    key = await run_in_threadpool(fed.ledger.key_pair, INSTANCE)
    return _negotiated(actors.instance_actor(fed.config, key.public_pem))


async def instance_outbox(request: Request) -> Response:
    """Empty: the instance actor publishes nothing (an actor has an outbox all the same)."""
    return _negotiated({"@context": "https://www.w3.org/ns/activitystreams",
                        "id": urls.instance_actor_id(_fediverse(request).config) + "/outbox",
                        "type": "OrderedCollection", "totalItems": 0, "orderedItems": []})


async def actor(request: Request) -> Response:
    fed = _fediverse(request)
    name = request.path_params["name"]
    snapshot = await run_in_threadpool(fed.site.snapshot)
    account = snapshot.accounts.get(name)
    if account is None:
        return PlainTextResponse(f"no account {name} here\n", 404)
    if not wants_activity_json(request.headers.get("accept", "")):
        return _to_blog(fed.config.site.root_url + "/")
    key = await run_in_threadpool(fed.ledger.key_pair, name)
    return _negotiated(actors.actor(fed.config, account, key.public_pem, request.app.state.strings))


async def followers(request: Request) -> Response:
    """The count only: who follows the blog is nobody else's business."""
    fed = _fediverse(request)
    name = request.path_params["name"]
    snapshot = await run_in_threadpool(fed.site.snapshot)
    if name not in snapshot.accounts:
        return PlainTextResponse(f"no account {name} here\n", 404)
    count = await run_in_threadpool(fed.ledger.follower_count, name)
    return _negotiated({"@context": "https://www.w3.org/ns/activitystreams", "id": urls.followers_id(fed.config, name),
                        "type": "OrderedCollection", "totalItems": count})


async def outbox(request: Request) -> Response:
    """The account's posts, newest first: an OrderedCollection naming its first and last page, and the pages
    (`?page=N`, PAGE_SIZE items) of `Create(Article)` (the site account) or `Announce` (a category's)."""
    fed = _fediverse(request)
    config, name = fed.config, request.path_params["name"]
    snapshot = await run_in_threadpool(fed.site.snapshot)
    account = snapshot.accounts.get(name)
    if account is None:
        return PlainTextResponse(f"no account {name} here\n", 404)
    collection = urls.outbox_id(config, name)
    pages = max(1, math.ceil(len(account.posts) / PAGE_SIZE))
    page_text = request.query_params.get("page")
    if page_text is None:
        return _negotiated({"@context": "https://www.w3.org/ns/activitystreams", "id": collection,
                            "type": "OrderedCollection", "totalItems": len(account.posts),
                            "first": f"{collection}?page=1", "last": f"{collection}?page={pages}"})
    if not page_text.isdigit() or not 1 <= int(page_text) <= pages:
        return PlainTextResponse(f"no page {page_text} (expected 1 to {pages})\n", 404)
    page = int(page_text)
    shown = account.posts[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    site = config.activitypub.username
    owner, owner_followers = urls.actor_id(config, site), urls.followers_id(config, site)
    if account.category:
        items = [objects.announce(config, post, actor=urls.actor_id(config, name),
                                  followers=urls.followers_id(config, name), now=post.date) for post in shown]
    else:
        rendered = await run_in_threadpool(fed.site.rendered, shown)
        items = [objects.create(objects.article(config, r, owner=owner, followers=owner_followers)) for r in rendered]
    for item in items:
        item.pop("@context", None)
    document: dict[str, Any] = {"@context": objects.CONTEXT, "id": f"{collection}?page={page}",
                                "type": "OrderedCollectionPage", "partOf": collection, "orderedItems": items}
    if page < pages:
        document["next"] = f"{collection}?page={page + 1}"
    if page > 1:
        document["prev"] = f"{collection}?page={page - 1}"
    return _negotiated(document)


async def post_object(request: Request) -> Response:
    """A post's Article at its id; a browser is sent to the post."""
    fed = _fediverse(request)
    config, key = fed.config, request.path_params["key"]
    site = config.activitypub.username
    published = await run_in_threadpool(fed.ledger.publication, key, site)
    # A build's Create or Announce names the object, and instances fetch it at once: the posts are read again
    # when the store says it was published (or edited) after they were last read.
    snapshot = await run_in_threadpool(fed.site.snapshot, published.changed_at if published else None)
    post = next((post for post in snapshot.posts if objects.object_key(post) == key), None)
    if post is None:
        if published is None or published.deleted_at is None:
            return PlainTextResponse("no such post here\n", 404)
        tombstone = {"@context": "https://www.w3.org/ns/activitystreams", "id": urls.base(config) +
                     objects.OBJECTS_PATH + key, "type": "Tombstone", "formerType": "Article",
                     "deleted": published.deleted_at.isoformat().replace("+00:00", "Z")}
        return ActivityJSON(tombstone, status_code=410, headers={"Vary": "Accept"})
    if not wants_activity_json(request.headers.get("accept", "")):
        return _to_blog(post.url)
    rendered = (await run_in_threadpool(fed.site.rendered, [post]))[0]
    # `updated` as the last Update sent it: an instance that fetches the object sees the edit's time.
    return _negotiated(objects.article(config, rendered, owner=urls.actor_id(config, site),
                                       followers=urls.followers_id(config, site),
                                       edited=published.edited_at if published else None))


def _negotiated(document: dict[str, Any]) -> Response:
    return ActivityJSON(document, headers={"Vary": "Accept"})


def _to_blog(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers={"Vary": "Accept"})


# -- inboxes ---------------------------------------------------------------------------------------------------


async def shared_inbox(request: Request) -> Response:
    return await _receive(request, None)


async def account_inbox(request: Request) -> Response:
    return await _receive(request, request.path_params["name"])


async def _receive(request: Request, inbox_account: str | None) -> Response:
    fed = _fediverse(request)
    config = fed.config
    snapshot = await run_in_threadpool(fed.site.snapshot)
    if inbox_account is not None and inbox_account not in snapshot.accounts:
        return PlainTextResponse(f"no account {inbox_account} here\n", 404)
    body = await _bounded_body(request)
    if body is None:
        return PlainTextResponse(f"the activity is larger than {MAX_BODY} bytes\n", 413)
    try:
        activity = json.loads(body)
        actor_id = inbox.actor_of(activity)
    except (ValueError, inbox.Malformed) as exc:
        return PlainTextResponse(f"not an activity: {exc}\n", 400)
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        claimed = signatures.claim(headers)
    except signatures.BadSignature as exc:
        return _unauthorized(str(exc))
    if headers.get("host", "").lower() != urls.host(config):
        # Signed for another server: a request relayed here, not sent to us.
        return _unauthorized(f"the request names host {headers.get('host')!r}, not {urls.host(config)!r}")
    for host in {_hostname(actor_id), _hostname(claimed.key_id)}:
        if await run_in_threadpool(fed.ledger.blocked, host):
            return PlainTextResponse(f"{host} is blocked here\n", 403)
    remote = await fed.remote()
    try:
        key = await remote.key(claimed.key_id)
    except FetchRefused as exc:
        if exc.gone and _deletes_itself(activity, actor_id, claimed.key_id):
            # The actor's own server says it is gone: what it followed here goes too (nothing else to verify with).
            await run_in_threadpool(fed.ledger.remove_actor, actor_id)
            return Response(status_code=202)
        return _unauthorized(f"the key {claimed.key_id} cannot be fetched: {exc}")
    url = _request_url(request, urlsplit(config.web.public_url).scheme)
    try:
        signatures.verify(claimed, request.method, url, headers, body, key.public_pem)
    except signatures.BadSignature:
        try:   # the actor may have a new key since it was fetched
            key = await remote.key(claimed.key_id, fresh=True)
            signatures.verify(claimed, request.method, url, headers, body, key.public_pem)
        except (signatures.BadSignature, FetchRefused) as exc:
            return _unauthorized(str(exc))
    if key.owner != actor_id:
        return _unauthorized(f"signed by {key.owner}, not by the activity's actor {actor_id}")
    effect = inbox.decide(config, activity, accounts=snapshot.accounts, inbox_account=inbox_account)
    return await _apply(fed, effect, inbox_account)


async def _apply(fed: Fediverse, effect: inbox.Effect, inbox_account: str | None) -> Response:
    ledger = fed.ledger
    if isinstance(effect, inbox.Follow):
        remote = await fed.remote()
        try:
            follower = await remote.actor(effect.actor)
            for address in {follower.inbox, follower.shared_inbox} - {""}:
                await check_address(address, allow_private=fed.config.activitypub.allow_private_addresses)
        except FetchRefused as exc:
            return PlainTextResponse(f"the follower's actor cannot be used: {exc}\n", 400)
        if not await run_in_threadpool(_follow, fed, effect, follower):
            return Response(status_code=202)       # a replay: taken (and accepted) once already
        log.info("%s", fed.words.text("fediverse_follows", actor=effect.actor, account=effect.account))
        return Response(status_code=202, background=BackgroundTask(fed.queued))
    if isinstance(effect, inbox.Unfollow):
        await run_in_threadpool(ledger.remove_follower, effect.account, effect.actor)
    elif isinstance(effect, inbox.ActorGone):
        await run_in_threadpool(ledger.remove_actor, effect.actor)
    elif isinstance(effect, inbox.Reaction):
        await run_in_threadpool(lambda: ledger.add_reaction(
            account=inbox_account or "", object_id=effect.object_id, kind=effect.kind, actor=effect.actor,
            activity_id=effect.activity_id, content=effect.content))
    elif isinstance(effect, inbox.Unreact):
        await run_in_threadpool(ledger.remove_reaction, effect.activity_id, effect.actor)
    return Response(status_code=202)


def _follow(fed: Fediverse, effect: inbox.Follow, follower: RemoteActor) -> bool:
    """Store the follower and queue the Accept, in one transaction; False (nothing done) for a Follow whose id was
    accepted before: a replay is taken once. A new Follow from a follower (Mastodon sends one again when it thinks
    the first was lost) refreshes its inboxes and is accepted again, as Mastodon accepts one."""
    accepted = inbox.accept(fed.config, effect.account, effect.activity)
    with fed.store.writing() as conn:
        lock_follower(conn, effect.account, effect.actor)
        follow_id = accepted["object"]["id"]
        if follow_id and queued_before(conn, account=effect.account, kind="Accept", object_id=follow_id):
            return False
        add_follower_in(conn, effect.account, effect.actor, follower.inbox, follower.shared_inbox,
                        _hostname(effect.actor))
        enqueue_in(conn, account=effect.account, activity=accepted, inboxes=[follower.inbox])
    return True


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY bytes (told by Content-Length, or found while reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return None
    except ClientDisconnect:
        return b""          # nobody is left to answer; an empty body is no activity
    return bytes(body)


def _request_url(request: Request, scheme: str) -> str:
    """The URL as its sender signed it: web.public_url's scheme (behind a proxy ending TLS this server sees
    http), the Host it sent, the path as sent (percent-encoded), the query."""
    scope = request.scope
    path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://{request.headers.get('host', '')}{path}" + (f"?{query}" if query else "")


def _deletes_itself(activity: dict[str, Any], actor_id: str, key_id: str) -> bool:
    same_origin = urlsplit(actor_id)[:2] == urlsplit(key_id)[:2]
    return activity.get("type") == "Delete" and inbox.ident(activity.get("object")) == actor_id and same_origin


def _hostname(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _unauthorized(why: str) -> Response:
    return PlainTextResponse(f"signature refused: {why}\n", 401)

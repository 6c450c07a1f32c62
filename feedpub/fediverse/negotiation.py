"""Content negotiation: whether a request asks for ActivityPub JSON (`application/activity+json`, or
`application/ld+json` with or without the ActivityStreams profile) rather than a page. A browser's Accept
(`text/html,…,*/*;q=0.8`) names neither, and gets the blog."""

from __future__ import annotations

ACTIVITY_JSON = "application/activity+json"
LD_JSON = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
_ACTIVITY_TYPES = ("application/activity+json", "application/ld+json")


def wants_activity_json(accept: str) -> bool:
    """True when an ActivityPub type is acceptable (q > 0) and no HTML is preferred to it."""
    best_activity, best_html = 0.0, 0.0
    for media_range in accept.split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = kind.lower()
        if kind in _ACTIVITY_TYPES:
            best_activity = max(best_activity, quality)
        elif kind in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, quality)
    return best_activity > 0 and best_activity >= best_html

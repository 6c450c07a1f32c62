"""The fediverse wing: the blog (and with `activitypub.categories`, each category) as ActivityPub accounts on
`web.public_url`'s host. One module per protocol concern, as Fedify's `federation/` keeps them: `urls` (where
each thing lives), `keys`, `signatures`, `keycache` (remote actors' keys), `addresses` (which hosts may be
fetched from), `actors` and `webfinger` / `nodeinfo` (the documents, pure), `negotiation`, `inbox` (what an
activity does), `ledger` (the wing's tables), `routes` (the Starlette endpoints, the I/O edge).
"""

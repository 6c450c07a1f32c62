"""The operator's dashboard at /admin: accounts and sessions (`auth`), pages and actions (`endpoints`),
the store's aggregates (`queries`), charts (`charts`) and the published feeds (`published`).

`feedpub.web.app` adds `routes()` when `web.admin` is true (otherwise no /admin route exists at all),
whether or not an account exists: until one does, the pages say how to make one (`auth.signed_in`), and
the first login works as soon as `feedpub admin add-user` has run, without a restart.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from feedpub.web.admin import auth, endpoints

ISSUE_ACTIONS = ("pause", "resume", "cancel", "retry")
SUBSCRIBER_ACTIONS = ("suppress", "lift", "categories")


def routes() -> list[BaseRoute]:
    """Every /admin route; the login throttle lives as long as these routes."""
    login = auth.Login(auth.LoginThrottle())
    return [
        Route("/admin/login", login.form, methods=["GET"]),
        Route("/admin/login", login.submit, methods=["POST"]),
        Route("/admin/logout", auth.logout, methods=["POST"]),
        Route("/admin", endpoints.overview, methods=["GET"]),
        Route("/admin/issues/{period}", endpoints.issue, methods=["GET"]),
        Route("/admin/issues/{period}/test", endpoints.issue_test, methods=["POST"]),
        Route("/admin/issues/{period}/restore", endpoints.issue_restore, methods=["POST"]),
        *(Route(f"/admin/issues/{{period}}/{action}", endpoints.issue_action, methods=["POST"])
          for action in ISSUE_ACTIONS),
        Route("/admin/subscribers", endpoints.subscribers, methods=["GET"]),
        Route("/admin/subscribers.csv", endpoints.subscribers_csv, methods=["GET"]),
        Route("/admin/subscribers/{id:int}", endpoints.subscriber, methods=["GET"]),
        *(Route(f"/admin/subscribers/{{id:int}}/{action}", endpoints.subscriber_action, methods=["POST"])
          for action in SUBSCRIBER_ACTIONS),
        Route("/admin/bounces", endpoints.bounces, methods=["GET"]),
        Route("/admin/bounces/{id:int}", endpoints.bounce, methods=["GET"]),
        Route("/admin/feeds", endpoints.feeds, methods=["GET"]),
        Route("/admin/feeds/rebuild", endpoints.rebuild, methods=["POST"]),
        Route("/admin/audit", endpoints.audit, methods=["GET"]),
        Route("/admin/fediverse", endpoints.fediverse, methods=["GET"]),
    ]

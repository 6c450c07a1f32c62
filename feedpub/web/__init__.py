"""The web wing: the pages readers use (subscribe, confirm, unsubscribe, preferences), the feeds and
the archive, served by the daemon."""

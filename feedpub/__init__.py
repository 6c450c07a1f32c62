"""feedpub: Jekyll-style Markdown posts → RSS, Atom and JSON feeds and a weekly e-mail digest."""

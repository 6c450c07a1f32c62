"""The site wing: a folder of posts → the feeds of `public/` (read, Liquid, Markdown, plan, write)."""

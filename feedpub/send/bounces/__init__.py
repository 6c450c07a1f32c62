"""Bounces, complaints and automatic replies: classified (`classify`, from `reports` and `heuristics`),
recorded with their effect (`process`, `evidence`), read from mailboxes (`sources`)."""

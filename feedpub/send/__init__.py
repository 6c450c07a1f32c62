"""The send wing: the due issue → one message per reader → SMTP, exactly once."""

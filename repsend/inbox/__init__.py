"""The way back (issue 14): read what came back to the bounce and opt-out addresses and sort it.

    from repsend.inbox import ImapMailbox, classify, read_path

    for item in read_path("bounces.mbox"):        # or ImapMailbox(...).messages()
        if item.problem:                          # malformed: report its place, skip it
            print(f"{item.where}: {item.problem}; skipped")
            continue
        returned = classify(item.message, opt_out_addresses=["optout@acme.example"], raw=item.raw)
        ...  # returned.key handled once; returned.kind, .addresses, .recipients, .original_message_id

Reading and sorting only: what the send log does with a ``Returned`` is the caller's.
"""

from repsend.inbox.classify import (
    KINDS,
    Kind,
    Malformed,
    Recipient,
    Returned,
    auto_reply_reason,
    classify,
    message_key,
    new_text,
    opt_out_reason,
    problem_of,
)
from repsend.inbox.readers import (
    ImapMailbox,
    Incoming,
    incoming,
    read_eml_dir,
    read_maildir,
    read_mbox,
    read_path,
)

__all__ = [
    "KINDS", "ImapMailbox", "Incoming", "Kind", "Malformed", "Recipient", "Returned", "auto_reply_reason",
    "classify", "incoming", "message_key", "new_text", "opt_out_reason", "problem_of", "read_eml_dir",
    "read_maildir", "read_mbox", "read_path",
]

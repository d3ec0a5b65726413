"""Secrets kept out of what the library shows: messages, ``repr()`` and logs.

A database URL may hold a password (``postgresql://app:secret@db/app``).
Wherever the library names a URL, it names it through :func:`redact_url`.
Passwords given as keywords are never put into a message to begin with.
"""

from __future__ import annotations

import re

# scheme://user:password@ ... : the password is what lies between the first ':'
# after "//" and the last '@' before the host (a password may itself hold '@').
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):(?P<password>[^/?#]*)@")
_QUERY_SECRETS = re.compile(r"(?P<key>[?&](?:password|passwd|sslpassword|ssl_key_password)=)[^&#]*", re.I)
_DSN_SECRETS = re.compile(r"(?P<key>\b(?:password|sslpassword)\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or the query string) replaced by ``***``.

    libpq's ``key=value`` connection strings are redacted the same way.
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}:***@", url)
    text = _QUERY_SECRETS.sub(lambda m: f"{m['key']}***", text)
    if "://" not in text:
        text = _DSN_SECRETS.sub(lambda m: f"{m['key']}***", text)
    return text

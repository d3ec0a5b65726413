"""What a failed TLS connection is told: the setting that asked for TLS and what to change.

Each family names its own settings (libpq's ``sslmode``/``sslrootcert`` for
PostgreSQL, ``ssl_mode``/``ssl_ca`` for MySQL); the advice is the same for
both. A verifying connection that fails is never retried without TLS or
without verification: the message says why it failed instead.
"""

from __future__ import annotations

from dataclasses import dataclass

# What the drivers' messages say for each problem (OpenSSL's, libpq's, asyncpg's, PyMySQL's).
_UNKNOWN_CA = ("certificate verify failed", "unable to get local issuer", "self-signed", "self signed")
_WRONG_HOST = ("does not match host name", "mismatch", "doesn't match", "not valid for")
_HANDSHAKE = ("ssl error", "[ssl", "sslerror", "handshake", "certificate")
_NO_TLS = ("does not support ssl", "rejected ssl upgrade", "doesn't support it", "ssl is required")


@dataclass(frozen=True)
class TlsAdvice:
    """A family's names for the advice: where the CA goes, and the mode that skips the host check."""

    ca_setting: str  # "sslrootcert"
    chain_only: str  # "sslmode='verify-ca'"

    def __call__(self, message: str, settings: str) -> str:
        """The advice for a failed connection's ``message``, TLS asked for by ``settings``.

        ``""`` when TLS is not what failed.
        """
        text = message.lower()
        # A host name mismatch is also a "certificate verify failed": it is looked for first.
        if any(words in text for words in _WRONG_HOST):
            problem = (
                "the server's certificate does not name the host connected to: connect by a name the "
                f"certificate holds, or check the chain only with {self.chain_only}"
            )
        elif any(words in text for words in _UNKNOWN_CA):
            problem = (
                f"the server's certificate is not signed by a CA that {self.ca_setting} names (or, "
                f"without {self.ca_setting}, by one the system trusts): give the CA bundle of the "
                "server or its provider"
            )
        elif any(words in text for words in _NO_TLS):
            problem = "the server does not offer TLS: enable TLS on the server"
        elif any(words in text for words in _HANDSHAKE):
            problem = "the TLS handshake failed"
        else:
            return ""
        return (
            f"TLS was required ({settings}) and {problem}. Nothing is sent without TLS once it was required."
        )

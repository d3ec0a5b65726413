"""The TLS settings of the MySQL/MariaDB classes, read into one SSLContext for both sides.

The names are PyMySQL's (``ssl_ca``, ``ssl_cert``, ``ssl_key``,
``ssl_verify_cert``, ``ssl_verify_identity``, ``ssl_disabled``, ``ssl``) and
``ssl_mode`` as MySQL's own clients name it. They are read once, when the
database is set up, into :class:`TlsSettings`: the mode and the context that
aiomysql or asyncmy and PyMySQL (peewee's sync side) then both use, so both
sides verify the same way. Any setting without ``ssl_mode`` verifies the
chain and the host name: the easy form is the secure one.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .tls import TlsAdvice

#: The TLS settings the MySQL classes take: PyMySQL's names, and ``ssl_mode`` as MySQL's clients name it.
TLS_SETTINGS = (
    "ssl", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key", "ssl_key_password", "ssl_verify_cert",
    "ssl_verify_identity", "ssl_disabled",
)  # fmt: skip
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# PyMySQL's older form: ssl={"ca": ..., "check_hostname": ...}, in our names.
_SSL_DICT_KEYS = {
    "ca": "ssl_ca", "cert": "ssl_cert", "key": "ssl_key", "password": "ssl_key_password",
    "check_hostname": "ssl_verify_identity", "verify_mode": "ssl_verify_cert",
}  # fmt: skip
ADVICE = TlsAdvice(ca_setting="ssl_ca", chain_only="ssl_mode='VERIFY_CA'")


@dataclass(frozen=True)
class TlsSettings:
    """How a MySQL database connects: its ``ssl_mode`` and the SSLContext both its sides use.

    ``PREFERRED`` encrypts when the server offers TLS and verifies nothing;
    ``REQUIRED`` refuses a server without TLS and verifies nothing;
    ``VERIFY_CA`` also checks the chain against ``ssl_ca`` (the system's CAs
    without it); ``VERIFY_IDENTITY`` also checks that the certificate names the
    host. Any TLS setting given without ``ssl_mode`` means ``VERIFY_IDENTITY``
    unless ``ssl_verify_cert``/``ssl_verify_identity`` say otherwise.
    """

    mode: str
    context: ssl.SSLContext | None  # None for DISABLED
    shown: str  # the settings as a message names them (no key password)

    @property
    def required(self) -> bool:
        return self.mode not in ("DISABLED", "PREFERRED")


def tls_settings(params: Mapping[str, Any]) -> TlsSettings | None:
    """The TLS settings among connect arguments ``params``; ``None`` when none is given.

    Raises ``ValueError`` (or ``TypeError``) naming the setting for settings
    that contradict each other or name a file that cannot be read.
    """
    given = {name: params[name] for name in TLS_SETTINGS if name in params}
    if not given:
        return None
    context = given.pop("ssl", None)
    if isinstance(context, dict):
        unknown = sorted(set(context) - set(_SSL_DICT_KEYS))
        if unknown:
            raise ValueError(
                f"ssl={{...}} takes the keys {', '.join(_SSL_DICT_KEYS)}; not {', '.join(unknown)}."
            )
        for key, value in context.items():
            given.setdefault(_SSL_DICT_KEYS[key], value)
        context = True
    files = {name: value for name, value in given.items() if name != "ssl_mode"}
    mode = _mode(given, context)
    shown = ", ".join(
        f"{name}={value!r}"
        for name, value in {"ssl_mode": mode, **files}.items()
        if name != "ssl_key_password"
    )
    if isinstance(context, ssl.SSLContext):
        if files:
            raise ValueError(
                f"ssl= an SSLContext and {', '.join(sorted(files))} both configure TLS: "
                "give one or the other."
            )
        return TlsSettings(mode, context, shown.replace("ssl_mode=", "ssl=<SSLContext>, ssl_mode=", 1))
    if context not in (None, True, False):
        raise TypeError(
            f"ssl takes an ssl.SSLContext, a dict of PyMySQL's ssl keys, True or False; got {context!r}."
        )
    if mode == "DISABLED":
        return TlsSettings(mode, None, shown)
    return TlsSettings(mode, _context(mode, given), shown)


def _mode(given: dict[str, Any], context: Any) -> str:
    flags = (given.get("ssl_verify_cert"), given.get("ssl_verify_identity"))
    if given.get("ssl_mode") is not None:
        mode = str(given["ssl_mode"]).upper().replace("-", "_")
        if mode not in SSL_MODES:
            raise ValueError(f"ssl_mode={given['ssl_mode']!r} is not one of {', '.join(SSL_MODES)}.")
        verifies = mode in ("VERIFY_CA", "VERIFY_IDENTITY")
        if (flags[0] is not None and bool(flags[0]) != verifies) or (
            flags[1] is not None and bool(flags[1]) != (mode == "VERIFY_IDENTITY")
        ):
            raise ValueError(
                f"ssl_mode={mode!r} contradicts ssl_verify_cert={flags[0]!r}, "
                f"ssl_verify_identity={flags[1]!r}: give ssl_mode alone."
            )
    elif given.get("ssl_disabled") or context is False:
        mode = "DISABLED"
    elif isinstance(context, ssl.SSLContext):
        mode = (
            "VERIFY_IDENTITY"
            if context.check_hostname
            else "VERIFY_CA"
            if context.verify_mode
            else "REQUIRED"
        )
    elif flags[0] is not None and not flags[0]:
        mode = "REQUIRED"
    elif flags[1] is not None and not flags[1]:
        mode = "VERIFY_CA"
    else:
        mode = "VERIFY_IDENTITY"
    others = [name for name, value in given.items() if name not in ("ssl_mode", "ssl_disabled") and value]
    if mode == "DISABLED" and (others or context):
        raise ValueError(
            f"TLS is disabled, yet {', '.join(others) or 'ssl'} asks for it: give one or the other."
        )
    return mode


def _context(mode: str, given: dict[str, Any]) -> ssl.SSLContext:
    try:
        if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
            context = ssl.create_default_context(cafile=given.get("ssl_ca"))
            context.check_hostname = mode == "VERIFY_IDENTITY"
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if given.get("ssl_cert"):
            context.load_cert_chain(given["ssl_cert"], given.get("ssl_key"), given.get("ssl_key_password"))
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(
            f"{name}={given[name]!r}" for name in ("ssl_ca", "ssl_cert", "ssl_key") if given.get(name)
        )
        raise ValueError(f"The TLS files could not be read ({files}): {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context

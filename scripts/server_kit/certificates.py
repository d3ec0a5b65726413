"""The throwaway CA and certificates of the TLS servers."""

from __future__ import annotations

import pathlib
import shutil
import threading

from .common import BASE, State, give, new_password

CERT_USER = "peewee_cert"
TLS_USER = "peewee_tls"

# Both TLS servers may start at once (in threads); they must share one CA.
_lock = threading.Lock()


def certificates(state: State) -> dict[str, str]:
    """The certificate files named in ``state``, made (and recorded there) on first use."""
    with _lock:
        if not state.get("certificates"):
            state["certificates"] = make_certificates(BASE / "certificates")
        files: dict[str, str] = state["certificates"]
        return files


def tls_password(state: State) -> str:
    """The password of the TLS servers' ``peewee_tls`` user, kept across starts."""
    with _lock:
        if not state.get("password"):
            state["password"] = new_password()
        password: str = state["password"]
        return password


def make_certificates(folder: pathlib.Path) -> dict[str, str]:
    """A CA, a server certificate for ``localhost`` only, a client certificate, and a CA that signed none."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    client = ca.issue_cert("peewee-cert.test", common_name=CERT_USER, key_type=trustme.KeyType.RSA)
    files = {
        "ca": folder / "ca.pem",
        "other_ca": folder / "other-ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.write_to_path(str(files["other_ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    for name in ("ca", "other_ca", "server_cert", "client_cert"):
        files[name].chmod(0o644)
    files["client_key"].chmod(0o600)
    return {name: str(path) for name, path in files.items()}


def server_copy(certs: dict[str, str], folder: pathlib.Path, user: str) -> dict[str, str]:
    """The CA, certificate and key a server reads, copied into its folder as its user's own."""
    copies = {}
    for name in ("ca", "server_cert", "server_key"):
        target = folder / pathlib.Path(certs[name]).name
        shutil.copyfile(certs[name], target)
        give(target, user, 0o600 if name == "server_key" else 0o644)
        copies[name] = str(target)
    return copies

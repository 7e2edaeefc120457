"""TLS towards the CouchDB nodes: one set of settings for every client of a process.

`CouchTLS` is what the composition root builds from COUCHDB_CA_FILE, COUCHDB_CLIENT_CERT and
COUCHDB_CLIENT_KEY and hands to every `CouchDBClient` (requests, health probes, set-up, the
replication manager's per-node clients, the key ring follower), so no client of the process
verifies differently from another.

- `https://` node URLs are always verified: against the system's trust store, or only against
  the CA file when one is configured; host names (and IP addresses) are checked.
- A client certificate, when configured, is offered to every node.
- `plain_http_refusal` says why an `http://` URL must not carry credentials: anything but
  loopback (127.0.0.0/8, ::1, localhost) is another machine's network.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from dataclasses import dataclass, field

import httpx

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_refusal(url: str) -> str | None:
    """Why this node URL would send credentials in the clear beyond this machine, or None
    (https://, or http:// on loopback)."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        return "not a valid node URL"
    if parsed.scheme == "https" or (parsed.scheme == "http" and is_loopback_host(parsed.host)):
        return None
    clean = str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
    return f"{clean} is plain HTTP beyond loopback: credentials would cross the network in clear"


class TLSConfigError(ValueError):
    """A CA file, client certificate or key that cannot be loaded; the message is one line."""


@dataclass(frozen=True)
class CouchTLS:
    """How this process verifies the nodes and which certificate it shows them.

    `ca_file`: PEM bundle of the CAs that sign the nodes' certificates ("" = the system store).
    `client_cert` / `client_key`: PEM certificate (and its key, unless in the same file) offered
    to the nodes; "" = none.
    """

    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    _context: list[ssl.SSLContext] = field(default_factory=list, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def context(self) -> ssl.SSLContext:
        """The one SSL context of these settings (built once; shared by every client)."""
        with self._lock:
            if not self._context:
                self._context.append(self._build())
            return self._context[0]

    def _build(self) -> ssl.SSLContext:
        if self.client_key and not self.client_cert:
            raise TLSConfigError("COUCHDB_CLIENT_KEY is set without COUCHDB_CLIENT_CERT")
        try:
            # verify_mode CERT_REQUIRED and check_hostname on: create_default_context's defaults
            context = ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"COUCHDB_CA_FILE {self.ca_file} cannot be used: {_reason(exc)}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.client_cert:
            try:
                context.load_cert_chain(self.client_cert, self.client_key or None)
            except (OSError, ssl.SSLError) as exc:
                raise TLSConfigError(
                    f"COUCHDB_CLIENT_CERT {self.client_cert} cannot be used: {_reason(exc)}"
                ) from None
        return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def tls_failure(exc: BaseException) -> tuple[str, str] | None:
    """For a failed connection: ("verification", why the node's certificate was refused) or
    ("handshake", why TLS could not be set up), or None when TLS was not the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            why = current.verify_message or current.reason or "certificate verify failed"
            return "verification", str(why)
        if isinstance(current, ssl.SSLError):
            return "handshake", str(current.reason or current)
        current = current.__cause__ or current.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "verification", text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
    return None


# the settings of a client given none: the system's trust store, no client certificate
DEFAULT_TLS = CouchTLS()

"""Settings, parsed and checked once, at start-up.

Every setting is an environment variable (README lists them); some `serve`/`migrate` flags
override one (`FLAGS`). `Config.from_env` turns them into typed values, or raises ConfigError
naming the variable, or the flag that overrode it; nothing downstream parses a setting again.
Channel plugins read their own settings (BROADCASTER_LINE_API_BASE, …) from `Config.env`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import platformdirs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from broadcaster.domain.auth import Caller, TokenTable
from broadcaster.domain.statistics import Schedule
from broadcaster.logs import FORMATS as LOG_FORMATS
from broadcaster.store.sealing import is_usable_key, key_beside


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


# The command-line flags that override a variable.
FLAGS = {
    "--database-url": "BROADCASTER_DATABASE_URL",
    "--grpc-listen": "BROADCASTER_GRPC_LISTEN",
    "--http-listen": "BROADCASTER_HTTP_LISTEN",
}
DATABASE_BACKENDS = ("sqlite", "postgresql")


class Address(NamedTuple):
    """Where a server listens: a host name or IP address, and a port (0 picks a free one)."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def default_database_url() -> str:
    data = Path(platformdirs.user_data_dir("broadcaster", appauthor=False))
    return f"sqlite:///{data / 'broadcaster.db'}"


def parse_address(value: str, name: str) -> Address:
    """`host:port`, `[v6 address]:port` or `v6-address:port`."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not (sep and host and port.isascii() and port.isdigit() and 0 <= int(port) <= 65535):
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return Address(host, int(port))


def parse_list(value: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around and between entries are dropped."""
    return tuple(entry for entry in (e.strip() for e in value.split(",")) if entry)


def parse_tokens(spec: str, name: str = "BROADCASTER_AUTH_TOKENS") -> TokenTable:
    """`tokA=m1,m2;tokB=*`: tokA acts for merchants m1 and m2, tokB for all. The caller of
    entry N is labelled `token#N`, so logs never show a token."""
    callers: dict[str, Caller] = {}
    for n, entry in enumerate(filter(None, (e.strip() for e in spec.split(";"))), start=1):
        token, sep, scope = entry.partition("=")
        token, scope = token.strip(), scope.strip()
        if not sep or not token or not scope:
            raise ConfigError(f"{name} entry {n} must look like 'token=m1,m2' or 'token=*'")
        if len(token) < 16:
            raise ConfigError(f"{name} entry {n}: use 16 or more characters")
        merchants = parse_list(scope)
        allowed = None if merchants == ("*",) else frozenset(merchants)
        if allowed is not None and "*" in allowed:
            raise ConfigError(f"{name} entry {n}: '*' stands alone")
        callers[token] = Caller(label=f"token#{n}", merchants=allowed)
    return TokenTable(callers)


def parse_database_url(value: str, name: str) -> URL:
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # the value is not shown: it may hold a password
        raise ConfigError(
            f"{name} is not a database URL (sqlite:///path or postgresql+psycopg://host/db)"
        ) from None
    backend = url.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        raise ConfigError(f"{name} must be a sqlite or postgresql URL, got a {backend!r} one")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(f"{name}: SQLAlchemy has no driver {url.drivername!r}") from None
    return url


def parse_module_names(value: str, name: str) -> tuple[str, ...]:
    modules = parse_list(value)
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(f"{name} entry {module!r} is not a module name")
    return modules


def parse_secret_keys(value: str, name: str) -> tuple[str, ...]:
    keys = parse_list(value)
    if not all(is_usable_key(key) for key in keys):
        raise ConfigError(f"{name} entries must be Fernet keys or passphrases of 32+ characters")
    return keys


def parse_log_format(value: str, name: str) -> str:
    fmt = value.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return fmt


def parse_log_level(value: str, name: str) -> int:
    level = logging.getLevelNamesMapping().get(value.strip().upper())
    if level is None:
        raise ConfigError(f"{name} must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


def parse_count(value: str, name: str) -> int:
    """A whole number of 1 or more."""
    text = value.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 1_000_000):
        raise ConfigError(f"{name} must be a whole number from 1 to 1000000, got {value!r}")
    return int(text)


def refuse_exposure(listen: Address, tokens: TokenTable, name: str) -> None:
    """Without tokens every caller acts for every merchant: only a loopback address may serve."""
    if tokens.empty and not listen.is_loopback:
        raise ConfigError(
            f"refusing to listen on {listen.host} ({name}): no BROADCASTER_AUTH_TOKENS are "
            "configured, so only a loopback address (127.0.0.1, ::1, localhost) is allowed"
        )


def parse_seconds(value: str, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name} must be a number of seconds above 0, got {value!r}")
    return seconds


def parse_seconds_or_off(value: str, name: str) -> float | None:
    """A number of seconds above 0, or `off` (None)."""
    if value.strip().lower() == "off":
        return None
    try:
        return parse_seconds(value, name)
    except ConfigError:
        problem = f"{name} must be a number of seconds above 0 or off, got {value!r}"
        raise ConfigError(problem) from None


def parse_public_url(value: str, name: str) -> str:
    """An absolute http(s) URL without query or fragment, kept without a trailing slash; ""
    when unset."""
    text = value.strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"{name} must be the service's public base URL, like https://hooks.example.com, "
            f"got {value!r}"
        )
    return text.rstrip("/")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The server's certificate chain and key (PEM), and the CA that client certificates must
    chain to (None: clients present none): the files, and what they held at start-up."""

    cert_path: Path
    key_path: Path
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def http_context(self) -> ssl.SSLContext:
        """For the HTTP port. It never asks for a client certificate: channels post webhooks
        without one, and authenticate them by signature."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _read_file(value: str, name: str) -> tuple[Path, bytes]:
    path = Path(value).expanduser()
    try:
        return path, path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {value!r}: {e.strerror or e}") from None


def parse_tls(read: _Settings) -> TlsFiles | None:
    """BROADCASTER_TLS_CERT and BROADCASTER_TLS_KEY (both or neither), and optionally
    BROADCASTER_TLS_CLIENT_CA: read and checked now, so a bad file stops start-up."""
    (cert, cert_name), (key, key_name) = read("BROADCASTER_TLS_CERT"), read("BROADCASTER_TLS_KEY")
    ca, ca_name = read("BROADCASTER_TLS_CLIENT_CA")
    if not cert and not key:
        if ca:
            raise ConfigError(f"{ca_name} needs {cert_name} and {key_name} (TLS) as well")
        return None
    if not cert or not key:
        missing, given = (cert_name, key_name) if not cert else (key_name, cert_name)
        raise ConfigError(f"{missing} is required with {given}: set both for TLS, or neither")
    (cert_path, cert_pem), (key_path, key_pem) = (
        _read_file(cert, cert_name),
        _read_file(key, key_name),
    )
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise ConfigError(f"{cert_name}: {cert!r} holds no PEM certificate")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except ssl.SSLError as e:
        raise ConfigError(
            f"{key_name}: {key!r} is not the PEM private key of the certificate in "
            f"{cert_name} ({e.reason or e})"
        ) from None
    ca_pem = None
    if ca:
        ca_pem = _read_file(ca, ca_name)[1]
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(
                cadata=ca_pem.decode("ascii")
            )
        except (ssl.SSLError, ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"{ca_name}: {ca!r} holds no PEM CA certificate ({e})") from None
    return TlsFiles(cert_path, key_path, cert_pem, key_pem, ca_pem)


class _Settings:
    """Each variable's text and the name to blame for it: the flag that overrode it, if any."""

    def __init__(self, env: Mapping[str, str], overrides: Mapping[str, str | None]) -> None:
        self._env = env
        self._flags: dict[str, tuple[str, str]] = {}
        for flag, value in overrides.items():
            if flag not in FLAGS:
                raise ValueError(f"{flag} overrides no setting (known: {', '.join(FLAGS)})")
            if value:
                self._flags[FLAGS[flag]] = (value, flag)

    def __call__(self, var: str, default: str = "") -> tuple[str, str]:
        """The value (`default` when unset or empty) and its name."""
        if var in self._flags:
            return self._flags[var]
        return self._env.get(var) or default, var

    def given(self, var: str) -> bool:
        return var in self._flags or var in self._env


@dataclass(frozen=True, slots=True)
class Config:
    database_url: URL
    grpc_listen: Address
    http_listen: Address
    # Empty: no authentication, and then the gRPC server listens on loopback only.
    tokens: TokenTable
    # Entry-point names of the plugins to load; None loads every installed one.
    plugins: tuple[str, ...] | None
    # Importable modules to register as plugins without an entry point (development, tests).
    plugin_modules: tuple[str, ...]
    # BROADCASTER_SECRET_KEY: the sealing key first, then older ones (see sealing_keys()).
    secret_keys: tuple[str, ...]
    # The whole environment, for channel plugins' own settings (BROADCASTER_LINE_API_BASE, …).
    env: Mapping[str, str]
    # `json` (one object per line) or `text` (for people at a terminal).
    log_format: str = "json"
    log_level: int = logging.INFO
    # TLS on both ports (None: plaintext); with a client CA, gRPC callers need a certificate.
    tls: TlsFiles | None = None
    # Unary calls in progress at once; more are refused with RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 1000
    # HTTP: seconds to receive a request's headers (from connecting, or from the previous
    # answer on a kept-alive connection; also how long an idle connection stays open), and
    # seconds to receive its body.
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    # WatchEvents streams one merchant may hold open at once on each replica.
    watch_streams_per_merchant: int = 16
    # Connections open at once to channels' APIs (all channels of one type share a host: LINE's
    # api.line.me). A channel sending at its ceiling keeps rate x latency requests on them.
    channel_connections: int = 1024
    # The most requests one channel keeps in flight at once: its bound follows the channel's
    # rate times its answer time, from 32 (or this, if lower) up to this.
    channel_in_flight: int = 192
    # SQLite: MiB of page cache of the connection every write goes through.
    sqlite_write_cache_mb: int = 64
    # The least lead time of ScheduleBroadcast, in seconds (60; benchmarks and tests lower it).
    schedule_min_lead: float = 60.0
    # On SIGTERM, seconds for calls in progress to finish and for batches with the channel to
    # be answered and recorded; what is still going then is cut off.
    drain_grace: float = 10.0
    # Seconds between re-syncs of a channel's follower list (a day); None ("off"): no automatic
    # syncs at all, neither the first at connection nor re-syncs (SyncContacts only).
    follower_sync_interval: float | None = 86_400.0
    # The URL this service's HTTP port is reached at from the internet (https://…), to set
    # channels' webhooks up; "" when not known (the merchant sets them by hand).
    public_url: str = ""
    # Broadcast statistics are read every `statistics_early_interval` seconds during the first
    # `statistics_early_period` seconds after a send (an hour, a day), then every
    # `statistics_late_interval` seconds (a day), until the channel's statistics window ends.
    statistics_early_interval: float = 3_600.0
    statistics_early_period: float = 86_400.0
    statistics_late_interval: float = 86_400.0

    def __post_init__(self) -> None:
        refuse_exposure(self.grpc_listen, self.tokens, "BROADCASTER_GRPC_LISTEN")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, str | None] | None = None,
    ) -> Config:
        """Every setting from `env` (default: the process environment), a flag in `overrides`
        (`{"--grpc-listen": "0.0.0.0:50051"}`; None or "" leaves the variable) taking the place
        of its variable. Raises ConfigError for the first setting that cannot be used."""
        e = os.environ if env is None else env
        read = _Settings(e, overrides or {})
        grpc_listen, grpc_name = read("BROADCASTER_GRPC_LISTEN", "127.0.0.1:50051")
        grpc = parse_address(grpc_listen, grpc_name)
        tokens = parse_tokens(*read("BROADCASTER_AUTH_TOKENS"))
        refuse_exposure(grpc, tokens, grpc_name)
        plugins = read("BROADCASTER_PLUGINS")[0]  # unset loads every installed plugin, "" none
        return cls(
            database_url=parse_database_url(
                *read("BROADCASTER_DATABASE_URL", default_database_url())
            ),
            grpc_listen=grpc,
            http_listen=parse_address(*read("BROADCASTER_HTTP_LISTEN", "127.0.0.1:8080")),
            tokens=tokens,
            plugins=parse_list(plugins) if read.given("BROADCASTER_PLUGINS") else None,
            plugin_modules=parse_module_names(*read("BROADCASTER_PLUGIN_MODULES")),
            secret_keys=parse_secret_keys(*read("BROADCASTER_SECRET_KEY")),
            env=dict(e),
            log_format=parse_log_format(*read("BROADCASTER_LOG_FORMAT", "json")),
            log_level=parse_log_level(*read("BROADCASTER_LOG_LEVEL", "INFO")),
            tls=parse_tls(read),
            max_concurrent_rpcs=parse_count(*read("BROADCASTER_MAX_CONCURRENT_RPCS", "1000")),
            http_header_timeout=parse_seconds(*read("BROADCASTER_HTTP_HEADER_TIMEOUT", "10")),
            http_body_timeout=parse_seconds(*read("BROADCASTER_HTTP_BODY_TIMEOUT", "30")),
            watch_streams_per_merchant=parse_count(
                *read("BROADCASTER_WATCH_STREAMS_PER_MERCHANT", "16")
            ),
            channel_connections=parse_count(*read("BROADCASTER_CHANNEL_CONNECTIONS", "1024")),
            channel_in_flight=parse_count(*read("BROADCASTER_CHANNEL_IN_FLIGHT", "192")),
            sqlite_write_cache_mb=parse_count(*read("BROADCASTER_SQLITE_WRITE_CACHE_MB", "64")),
            schedule_min_lead=parse_seconds(*read("BROADCASTER_SCHEDULE_MIN_LEAD", "60")),
            drain_grace=parse_seconds(*read("BROADCASTER_DRAIN_GRACE", "10")),
            follower_sync_interval=parse_seconds_or_off(
                *read("BROADCASTER_FOLLOWER_SYNC_INTERVAL", "86400")
            ),
            public_url=parse_public_url(*read("BROADCASTER_PUBLIC_URL")),
            statistics_early_interval=parse_seconds(
                *read("BROADCASTER_STATISTICS_EARLY_INTERVAL", "3600")
            ),
            statistics_early_period=parse_seconds(
                *read("BROADCASTER_STATISTICS_EARLY_PERIOD", "86400")
            ),
            statistics_late_interval=parse_seconds(
                *read("BROADCASTER_STATISTICS_LATE_INTERVAL", "86400")
            ),
        )

    def statistics_schedule(self) -> Schedule:
        """When broadcasts' statistics are read."""
        return Schedule(
            early_interval=timedelta(seconds=self.statistics_early_interval),
            early_period=timedelta(seconds=self.statistics_early_period),
            late_interval=timedelta(seconds=self.statistics_late_interval),
        )

    def sealing_keys(self) -> tuple[str, ...]:
        """BROADCASTER_SECRET_KEY, or for a SQLite file a key kept beside it (made on first use,
        so only by the commands that seal). A server database (PostgreSQL) needs the key
        configured, the same on every replica."""
        if self.secret_keys:
            return self.secret_keys
        url = self.database_url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return (key_beside(Path(url.database).expanduser()),)
        raise ConfigError(
            "BROADCASTER_SECRET_KEY is required with this database (it encrypts channel "
            "credentials; use the same value on every replica)"
        )

    def page_token_key(self) -> bytes:
        """The key that signs page tokens: derived from the sealing key (HMAC-SHA256 under its
        own label, so it reveals nothing of the sealing key), the same on every replica."""
        return hmac.new(
            self.sealing_keys()[0].encode(), b"broadcaster page tokens v1", hashlib.sha256
        ).digest()

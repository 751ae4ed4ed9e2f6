"""Settings, parsed and checked once, at start-up.

Every setting is an environment variable (README lists them); some `serve`/`migrate` flags
override one (`FLAGS`). `Config.from_env` turns them into typed values, or raises ConfigError
naming the variable, or the flag that overrode it; nothing downstream parses a setting again.
Channel plugins read their own settings (BROADCASTER_LINE_API_BASE, …) from `Config.env`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import platformdirs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from broadcaster.domain.auth import Caller, TokenTable
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
    # WatchEvents streams one merchant may hold open at once on each replica.
    watch_streams_per_merchant: int = 16

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
            watch_streams_per_merchant=parse_count(
                *read("BROADCASTER_WATCH_STREAMS_PER_MERCHANT", "16")
            ),
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

"""Configuration from environment variables (README lists them); `serve` flags may override."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from sqlalchemy.engine import make_url

from broadcaster.api.auth import ConfigError, TokenTable
from broadcaster.logs import FORMATS as LOG_FORMATS
from broadcaster.store.sealing import key_beside


def default_database_url() -> str:
    data = Path(platformdirs.user_data_dir("broadcaster", appauthor=False))
    return f"sqlite:///{data / 'broadcaster.db'}"


def _host_port(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str
    grpc_listen: str
    http_listen: str
    auth_tokens: str
    plugins: str | None
    # Importable modules to register as plugins without an entry point (development, tests).
    plugin_modules: str
    secret_key: str | None
    # The whole environment, for channel plugins' own settings (BROADCASTER_LINE_API_BASE, …).
    env: Mapping[str, str]
    # `json` (one object per line) or `text` (for people at a terminal); checked by log_settings().
    log_format: str = "json"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        e = os.environ if env is None else env
        return cls(
            database_url=e.get("BROADCASTER_DATABASE_URL") or default_database_url(),
            grpc_listen=e.get("BROADCASTER_GRPC_LISTEN") or "127.0.0.1:50051",
            http_listen=e.get("BROADCASTER_HTTP_LISTEN") or "127.0.0.1:8080",
            auth_tokens=e.get("BROADCASTER_AUTH_TOKENS", ""),
            plugins=e.get("BROADCASTER_PLUGINS"),
            plugin_modules=e.get("BROADCASTER_PLUGIN_MODULES", ""),
            secret_key=e.get("BROADCASTER_SECRET_KEY") or None,
            env=dict(e),
            log_format=(e.get("BROADCASTER_LOG_FORMAT") or "json").strip().lower(),
            log_level=(e.get("BROADCASTER_LOG_LEVEL") or "INFO").strip().upper(),
        )

    def tokens(self) -> TokenTable:
        return TokenTable.parse(self.auth_tokens)

    def grpc_address(self) -> tuple[str, int]:
        return _host_port(self.grpc_listen, "BROADCASTER_GRPC_LISTEN")

    def http_address(self) -> tuple[str, int]:
        return _host_port(self.http_listen, "BROADCASTER_HTTP_LISTEN")

    def log_settings(self) -> tuple[str, int]:
        """The log format and level, checked."""
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"BROADCASTER_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                f"got {self.log_format!r}"
            )
        level = logging.getLevelName(self.log_level)
        if not isinstance(level, int):
            raise ConfigError(
                "BROADCASTER_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, "
                f"got {self.log_level!r}"
            )
        return self.log_format, level

    def sealing_key(self) -> str:
        """BROADCASTER_SECRET_KEY, or for a SQLite file a key kept beside it (made on first use).
        A server database (PostgreSQL) needs the key configured, the same on every replica."""
        if self.secret_key:
            return self.secret_key
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return key_beside(Path(url.database).expanduser())
        raise ConfigError(
            "BROADCASTER_SECRET_KEY is required with this database (it encrypts channel "
            "credentials; use the same value on every replica)"
        )

"""Configuration from environment variables (README lists them); `serve` flags may override."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from broadcaster.api.auth import ConfigError, TokenTable


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        e = os.environ if env is None else env
        return cls(
            database_url=e.get("BROADCASTER_DATABASE_URL") or default_database_url(),
            grpc_listen=e.get("BROADCASTER_GRPC_LISTEN") or "127.0.0.1:50051",
            http_listen=e.get("BROADCASTER_HTTP_LISTEN") or "127.0.0.1:8080",
            auth_tokens=e.get("BROADCASTER_AUTH_TOKENS", ""),
            plugins=e.get("BROADCASTER_PLUGINS"),
        )

    def tokens(self) -> TokenTable:
        return TokenTable.parse(self.auth_tokens)

    def grpc_address(self) -> tuple[str, int]:
        return _host_port(self.grpc_listen, "BROADCASTER_GRPC_LISTEN")

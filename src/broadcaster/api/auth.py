"""Bearer tokens and the merchants each may act for.

`BROADCASTER_AUTH_TOKENS="tokA=m1,m2;tokB=*"`: tokA acts for merchants m1 and m2, tokB for all.
Tokens are compared by their SHA-256 digest, so lookups take the same time whatever the token,
and the tokens themselves are never kept in logs: a caller is labelled `token#N`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from broadcaster.domain.auth import Caller
from broadcaster.domain.errors import Unauthenticated


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    def __init__(self, callers: Mapping[bytes, Caller]) -> None:
        self._callers = dict(callers)

    @property
    def empty(self) -> bool:
        return not self._callers

    @classmethod
    def parse(cls, spec: str) -> TokenTable:
        callers: dict[bytes, Caller] = {}
        for n, entry in enumerate(filter(None, (e.strip() for e in spec.split(";"))), start=1):
            token, sep, scope = entry.partition("=")
            token, scope = token.strip(), scope.strip()
            if not sep or not token or not scope:
                raise ConfigError(
                    f"BROADCASTER_AUTH_TOKENS entry {n} must look like 'token=m1,m2' or 'token=*'"
                )
            if len(token) < 16:
                raise ConfigError(f"BROADCASTER_AUTH_TOKENS entry {n}: use 16 or more characters")
            merchants = [m.strip() for m in scope.split(",") if m.strip()]
            allowed = None if merchants == ["*"] else frozenset(merchants)
            if allowed is not None and "*" in allowed:
                raise ConfigError(f"BROADCASTER_AUTH_TOKENS entry {n}: '*' stands alone")
            callers[_digest(token)] = Caller(label=f"token#{n}", merchants=allowed)
        return cls(callers)

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated(
                "Missing 'authorization: Bearer <token>' metadata.", reason="TOKEN_MISSING"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "The authorization metadata must be 'Bearer <token>'.", reason="TOKEN_MALFORMED"
            )
        caller = self._callers.get(_digest(token.strip()))
        if caller is None:
            raise Unauthenticated("The token is not known to this server.", reason="TOKEN_UNKNOWN")
        return caller

"""Who is calling, and which merchants they may act for."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from broadcaster.domain.errors import NotFound
from broadcaster.domain.reasons import Reason


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. `merchants` is None for a token scoped to every merchant."""

    label: str
    merchants: frozenset[str] | None

    def may_act_for(self, merchant: str) -> bool:
        return self.merchants is None or merchant in self.merchants

    def require(self, merchant: str) -> None:
        """A merchant the caller may not act for looks exactly like one that does not exist."""
        if not self.may_act_for(merchant):
            raise NotFound("merchant", f"merchants/{merchant}", reason=Reason.MERCHANT_NOT_FOUND)


# The caller of a server that has no tokens configured (it binds loopback only).
LOCAL = Caller(label="local", merchants=None)


class TokenTable:
    """Bearer tokens and the caller each stands for. Tokens are kept as their SHA-256 digests,
    so a lookup takes the same time whatever the token."""

    def __init__(self, callers: Mapping[str, Caller] | None = None) -> None:
        self._callers = {_digest(token): c for token, c in (callers or {}).items()}

    @property
    def empty(self) -> bool:
        return not self._callers

    def find(self, token: str) -> Caller | None:
        return self._callers.get(_digest(token))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()

"""The opening every merchant-level List call shares: parse `parent`, check the paging fields
against a fingerprint of the query, report every bad field at once, check the caller."""

from __future__ import annotations

from broadcaster.domain.auth import Caller
from broadcaster.domain.errors import Violations, collect
from broadcaster.domain.names import MerchantName
from broadcaster.domain.paging import Page, PageTokens, fingerprint


def open_list(
    pages: PageTokens,
    caller: Caller,
    v: Violations,
    parent: str,
    page_size: int,
    page_token: str,
    query: tuple[object, ...],
    *,
    default: int,
    maximum: int,
) -> tuple[str, Page, str]:
    """Returns (merchant id, page, query fingerprint). `v` may already hold the caller's own
    field violations; `query` is every other field that shapes the result."""
    merchant = collect(v, lambda: MerchantName.parse(parent, "parent"))
    key = fingerprint(parent, *query)
    page = collect(
        v, lambda: pages.request(page_size, page_token, key, default=default, maximum=maximum)
    )
    v.raise_if_any()
    assert merchant is not None and page is not None
    caller.require(merchant.merchant)
    return merchant.merchant, page, key

"""Iterate over every item of a paginated List call (`page_token` / `next_page_token`).

    for group in paginate(client.customer_groups.ListCustomerGroups,
                          ListCustomerGroupsRequest(parent="merchants/shop-1", page_size=200),
                          lambda page: page.customer_groups):
        ...

Pages are fetched as the iteration reaches them; the request passed in is not modified. A page
token belongs to its query: the other request fields stay the same from page to page.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, overload

from google.protobuf.message import Message

__all__ = ["pages", "paginate"]


class PageRequest(Protocol):
    page_token: str


class Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


RequestT = TypeVar("RequestT", bound=PageRequest)
PageT = TypeVar("PageT", bound=Page)
ItemT = TypeVar("ItemT")


def pages(method: Callable[[RequestT], PageT], request: RequestT) -> Iterator[PageT]:
    """Each response of `method`, following `next_page_token` until it is empty."""
    current = copy.deepcopy(request)
    while True:
        page = method(current)
        yield page
        if not page.next_page_token:
            return
        current.page_token = page.next_page_token


def _repeated_items(page: Any) -> Iterable[Any]:
    assert isinstance(page, Message)
    repeated = [
        field
        for field in page.DESCRIPTOR.fields
        if field.is_repeated and field.message_type is not None
    ]
    if len(repeated) != 1:
        names = ", ".join(f.name for f in repeated) or "none"
        raise TypeError(f"{page.DESCRIPTOR.full_name} has repeated fields {names}: pass `items`")
    items: Iterable[Any] = getattr(page, repeated[0].name)
    return items


@overload
def paginate(method: Callable[[RequestT], PageT], request: RequestT) -> Iterator[Any]: ...


@overload
def paginate(
    method: Callable[[RequestT], PageT],
    request: RequestT,
    items: Callable[[PageT], Iterable[ItemT]],
) -> Iterator[ItemT]: ...


def paginate(
    method: Callable[[RequestT], PageT],
    request: RequestT,
    items: Callable[[PageT], Iterable[Any]] | None = None,
) -> Iterator[Any]:
    """Every item of every page. `items` picks them from a page (`lambda p: p.broadcasts`,
    typed); without it, the response's one repeated message field is used."""
    for page in pages(method, request):
        yield from (items(page) if items is not None else _repeated_items(page))

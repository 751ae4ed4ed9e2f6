"""Python client for broadcaster (`broadcaster.v1`).

- `broadcaster_client.v1`: the generated messages and stubs (`*_pb2`, `*_pb2_grpc`, typed).
- `connect(target, token)`: a `Client` with every service's stub, sending the bearer token.
- `BroadcasterError`: a failed call with its `ErrorInfo` reason, `BadRequest` field violations,
  precondition and quota violations.
- `paginate(method, request, items)`: every item of a List call, page after page.
- `retry(method, request)`: a call repeated while the server is out of reach (`UNAVAILABLE`).
"""

from broadcaster_client.client import Client, connect
from broadcaster_client.errors import DOMAIN, BroadcasterError
from broadcaster_client.paging import pages, paginate
from broadcaster_client.retry import TRANSIENT, retry

__all__ = [
    "DOMAIN",
    "TRANSIENT",
    "BroadcasterError",
    "Client",
    "connect",
    "pages",
    "paginate",
    "retry",
]

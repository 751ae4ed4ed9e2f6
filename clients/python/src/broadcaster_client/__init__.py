"""Python client for broadcaster (`broadcaster.v1`).

- `broadcaster_client.v1`: the generated messages and stubs (`*_pb2`, `*_pb2_grpc`, typed).
- `connect(target, token)`: a `Client` with every service's stub, sending the bearer token.
- `BroadcasterError`: a failed call with its `ErrorInfo` reason, `BadRequest` field violations,
  precondition and quota violations.
- `paginate(method, request, items)`: every item of a List call, page after page.
"""

from broadcaster_client.client import Client, connect
from broadcaster_client.errors import DOMAIN, BroadcasterError
from broadcaster_client.paging import pages, paginate

__all__ = ["DOMAIN", "BroadcasterError", "Client", "connect", "pages", "paginate"]

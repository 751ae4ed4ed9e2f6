"""The sending engine: rate limiting, retry policy, batches under leases (the invariants of
dispatch in docs/architecture.md)."""

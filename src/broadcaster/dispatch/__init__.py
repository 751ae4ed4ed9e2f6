"""The sending engine (DESIGN §5): rate limiting, retry policy, batches under leases."""

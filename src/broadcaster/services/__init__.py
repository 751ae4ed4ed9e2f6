"""Application services: validate a request, check the caller's merchant, run repositories in one
transaction. They take plain values and raise domain errors; the API layer adapts protos to them.

This layer sits between api/ and store/ so handlers stay thin and the same operations serve
the tools and the tests.
"""

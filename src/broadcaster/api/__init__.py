"""The gRPC surface: servicers, the call guard (auth + the single error translator), the server."""

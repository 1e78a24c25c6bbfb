"""findlora inference service: models, scoring, search and the gRPC server."""

"""Schema v1 of the unified request over gRPC: inference.proto and the stubs generated from it at install time."""

"""The front door (issue 16): one interface in front of every backend. Pure parts here (the error table, the
unified schema, routing and outlier ejection); the servers for HTTP, gRPC and MQTT build on them."""

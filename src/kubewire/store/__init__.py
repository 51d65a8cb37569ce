"""API-server semantics in process: the durable store, informers and the work queue."""

"""The Service data plane's pure parts (kube-proxy's role): the per-node snapshot of Services and
endpoints, upstream's endpoint selection, and the rule compilers with their reference evaluator."""

"""Cluster DNS: a CoreDNS-compatible server for the Kubernetes DNS specification (issue 6)."""

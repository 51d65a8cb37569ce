"""The Kubernetes-compatible API server and the control-plane process around it."""

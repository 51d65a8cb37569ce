"""kubelet-lite: runs the pods bound to one node as real processes in their own network namespaces."""

"""Agents: the long-running per-node loops (kubelet-lite now; the proxy, policy and speaker agents later)."""

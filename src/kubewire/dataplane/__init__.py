"""Pure compilers: per-node snapshots in, desired state out (pod-network plans now; nftables,
DNS and L7 tables later). No I/O, no asyncio."""

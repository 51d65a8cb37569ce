"""Built-in workloads: the programs that container images resolve to (kubewire pulls no images).

Each module is a standalone program run as ``python -m kubewire.workloads.<name>`` inside a pod.
They import nothing else from kubewire and keep their imports light, because every pod pays for them.
"""

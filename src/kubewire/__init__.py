"""kubewire: the Kubernetes service-networking stack, for real, on one Linux machine."""

__version__ = "0.1.0"

"""Control loops (kube-controller-manager's and the scheduler's roles) as reconcilers.

Each controller computes a :class:`~kubewire.controllers.runtime.Plan` purely from informer
caches; the runtime's thin writer carries it out through the client seam.
"""

"""Cluster DNS as pure values: the Kubernetes DNS specification (schema 1.1.0) answered the way
CoreDNS's ``kubernetes`` plugin answers it, and the wire handling a DNS server needs around it.

``records`` owns the data (Services, EndpointSlices, Pods and Namespaces compiled into a zone,
updated per Service) and the answers (``ClusterZone.lookup``: rcode and sections, NXDOMAIN versus
NODATA, which names are not ours and must be forwarded).  ``wire`` owns the bytes: reading a query
strictly and quickly, rendering answers with dnspython, and a response cache whose hits patch the
query id and name case into stored bytes.  Neither opens a socket: the DNS server in
``kubewire.agents`` feeds them packets and sends what they return.
"""

from kubewire.dataplane.dns.records import (
    Answer,
    Chase,
    ClusterZone,
    DnsSettings,
    ServiceRecords,
    complete_chase,
)
from kubewire.dataplane.dns.wire import (
    Query,
    Reject,
    ResponseCache,
    Result,
    answer,
    error_reply,
    parse_query,
    render,
)

__all__ = [
    "Answer",
    "Chase",
    "ClusterZone",
    "DnsSettings",
    "Query",
    "Reject",
    "ResponseCache",
    "Result",
    "ServiceRecords",
    "answer",
    "complete_chase",
    "error_reply",
    "parse_query",
    "render",
]

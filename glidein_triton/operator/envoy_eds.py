"""``glidein-triton pool envoy-eds``: Envoy's file-based endpoint discovery (EDS) from the pool's server ads.

A site that runs a gateway (Envoy, SuperSONIC) points one EDS cluster at the file this writes: each pool
server that the collector lists (``TritonPoolRole == "server"``, the pool's name, accepting, not draining
within the margin, advertised by an authenticated identity) is one endpoint, the host and port of its
``TritonPoolURL``, in a locality named by its ``TritonPoolSite``, weighted by its published queue time
(:func:`weight`). The ads are checked as a client glidein checks them (``pool_discovery.candidate``); a
malformed ad is skipped with a warning naming it.

The file is one ``DiscoveryResponse`` (JSON) holding one ``ClusterLoadAssignment``. Envoy watches a
``path_config_source`` for moves only (an edit in place is not seen), so the file is written beside its
name and renamed over it; an unchanged document is not rewritten.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import pool_discovery
from glidein_triton.worker.files import write_atomically
from glidein_triton.worker.pool_discovery import Candidate

PROGRAM = "glidein-triton pool envoy-eds"
DEFAULT_CLUSTER = "triton-pool"
ASSIGNMENT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#: The weight of a server with an empty queue, and the queue time (ms) that halves it (:func:`weight`).
MAX_WEIGHT = 100
QUEUE_HALVING_MS = 10.0
#: The endpoint metadata key that names a server's CA (for a cluster's ``transport_socket_matches``).
SOCKET_MATCH = "envoy.transport_socket_match"
CA_KEY = "triton_pool_ca"


def weight(queue_time_ms: float) -> int:
    """An endpoint's load balancing weight: ``round(100 / (1 + q / 10))`` for a published mean queue time of
    ``q`` ms, clamped to 1..100 (0 ms: 100, 10 ms: 50, 90 ms: 10, 990 ms and more: 1)."""
    raw = MAX_WEIGHT / (1.0 + max(queue_time_ms, 0.0) / QUEUE_HALVING_MS)
    return max(1, min(MAX_WEIGHT, round(raw)))


def query_argv(condor_status: str, pool: str, collector: str) -> list[str]:
    """The condor_status command line for the accepting servers of pool ``pool``, projected."""
    argv = [condor_status]
    if collector:
        argv += ["-pool", collector]
    constraint = pool_discovery.constraint(pool)
    return [*argv, "-constraint", constraint, "-json", "-attributes", ",".join(pool_discovery.ATTRIBUTES)]


def servers(
    ads: Sequence[Mapping[str, object]],
    now: float,
    drain_margin: float,
    identities: Sequence[str] = ("*",),
    warn: list[str] | None = None,
    certificates: Path | None = None,
) -> list[Candidate]:
    """The servers of ``ads`` that take work now: well formed, accepting, not draining before ``now +
    drain_margin`` (a drain time of 0 is unknown: kept), one per URL; with ``certificates``, only those whose
    CA has a client certificate ``certificates/<CA fingerprint hex>.pem`` there (the gateway's own, as a
    client glidein keeps them). Each skipped ad adds a line to ``warn``."""
    found: list[Candidate] = []
    for ad in ads:
        name = ad.get("Name", "?")
        try:
            server = pool_discovery.candidate(ad, identities)
        except ValueError as error:
            if warn is not None:
                warn.append(f"server ad {name!r} skipped: {error}")
            continue
        if not server.accepting:
            continue
        if server.drain_time and server.drain_time <= now + drain_margin:
            continue
        held = certificates / f"{server.ca_fingerprint.partition(':')[2]}.pem" if certificates else None
        if held is not None and not held.is_file():
            if warn is not None:
                warn.append(f"server ad {name!r} skipped: no client certificate {held}")
            continue
        if all(other.url != server.url for other in found):
            found.append(server)
    return found


def endpoint(server: Candidate) -> dict[str, object]:
    """One ``LbEndpoint``: the server's address, its weight and its CA's fingerprint as metadata."""
    host, _, port = server.url.rpartition(":")
    return {
        "endpoint": {
            "address": {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}},
            "hostname": server.name,
        },
        "load_balancing_weight": weight(server.queue_time_ms),
        "metadata": {"filter_metadata": {SOCKET_MATCH: {CA_KEY: server.ca_fingerprint.partition(":")[2]}}},
    }


def discovery_response(found: Sequence[Candidate], cluster: str, site: str = "") -> dict[str, object]:
    """The ``DiscoveryResponse`` with cluster ``cluster``'s ``ClusterLoadAssignment``: one locality per
    site (``zone``), sorted; with ``site`` (the gateway's own) and a server there, the other sites get
    priority 1 (Envoy uses them when its own site's servers are unhealthy). ``version_info`` is a hash of the
    assignment."""
    by_site: dict[str, list[Candidate]] = {}
    for server in found:
        by_site.setdefault(server.site, []).append(server)
    local = bool(site) and site in by_site
    localities = [
        {
            "locality": {"zone": name},
            "lb_endpoints": [endpoint(server) for server in sorted(members, key=lambda s: s.url)],
            "priority": 0 if not local or name == site else 1,
        }
        for name, members in sorted(by_site.items())
    ]
    assignment = {"@type": ASSIGNMENT_TYPE, "cluster_name": cluster, "endpoints": localities}
    text = json.dumps(assignment, sort_keys=True, separators=(",", ":"))
    return {
        "version_info": hashlib.sha256(text.encode()).hexdigest()[:16],
        "type_url": ASSIGNMENT_TYPE,
        "resources": [assignment],
    }


def write(path: Path, document: Mapping[str, object]) -> bool:
    """Write ``document`` to ``path`` (0644) by rename, unless the file already holds it; whether it
    wrote."""
    content = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    write_atomically(path, content, 0o644)
    return True


def refresh(
    argv: Sequence[str],
    environment: Mapping[str, str],
    output: Path,
    cluster: str,
    site: str,
    drain_margin: float,
    identities: Sequence[str],
    certificates: Path | None = None,
    now: float | None = None,
) -> tuple[int, bool, list[str]]:
    """Query, then write the file: (the number of endpoints, whether the file changed, the warnings).
    DiscoveryError when the query fails: the file is left as it was."""
    ads = pool_discovery.parse_ads(pool_discovery.run_bounded(argv, environment))
    warnings: list[str] = []
    when = time.time() if now is None else now
    found = servers(ads, when, drain_margin, identities, warnings, certificates)
    changed = write(output, discovery_response(found, cluster, site))
    return len(found), changed, warnings


def log(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)

"""The front door's pool route (issue 25, item 4): a job's plaintext gRPC client on loopback reaches a pool
server over mutual TLS through the door, unchanged (the real servers of test_pool_servers on 127.0.0.2/.3)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from glidein_triton.worker import agent, door, pool_discovery, pool_files, publish
from glidein_triton.worker.ports import free_port

from .support import AS_ROOT, OTHER_UID, PILOT_UID, run_as
from .test_pool_servers import MODEL, Pool, Server, ad, cluster

__all__ = ["cluster"]  # the real servers' fixture, used here

#: A job with the plain gRPC client, no TLS, no pool code: one inference, then a load (refused by the
#: door's gRPC filter). Run as ``python -c JOB HOST:PORT MODEL``; prints the output, then the load's outcome.
JOB = (
    "import sys, numpy as np, tritonclient.grpc as g\n"
    "c = g.InferenceServerClient(sys.argv[1])\n"
    "t = g.InferInput('INPUT0', [4], 'INT32'); t.set_data_from_numpy(np.array([1, 2, 3, 4], dtype=np.int32))\n"
    "print(c.infer(sys.argv[2], [t]).as_numpy('OUTPUT0').tolist())\n"
    "try: c.load_model(sys.argv[2]); print('loaded')\n"
    "except Exception as e: print(str(e).splitlines()[0])\n"
)
JOB_UID = PILOT_UID if AS_ROOT else os.getuid()


@dataclass
class PoolDoor:
    url: str
    targets: Path
    process: subprocess.Popen[str]


def targets_of(pool: Pool, *servers: Server) -> list[door.PoolTarget]:
    key = str(pool_files.pool_dir(pool.work) / pool_files.CLIENT_KEY)
    return [
        door.PoolTarget(
            server.url,
            str(server.authority.cert),
            str(pool_files.client_cert_path(pool.work, server.authority.fingerprint)),
            key,
        )
        for server in servers
    ]


@pytest.fixture(scope="module")
def pool_door(cluster: Pool) -> Iterator[PoolDoor]:
    """A door with one pool route for JOB_UID, A first then B."""
    targets = pool_discovery.door_targets_path(cluster.work)
    door.write_pool_targets(targets, targets_of(cluster, cluster.a, cluster.b))
    port = free_port()
    process = subprocess.Popen(
        door.command("--uid", str(JOB_UID), "--route", f"pool@127.0.0.1:{port}={targets}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield PoolDoor(f"127.0.0.1:{port}", targets, process)
    finally:
        process.terminate()
        process.communicate(10)


def inferences(server: Server) -> int:
    """How many inferences of MODEL ``server`` ran (its statistics, on its loopback HTTP)."""
    url = f"http://127.0.0.1:{server.http_port}/v2/models/{MODEL}/stats"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return int(json.load(answer)["model_stats"][0]["inference_stats"]["success"]["count"])


def job(pool_door: PoolDoor, uid: int = JOB_UID, code: str = JOB) -> subprocess.CompletedProcess[str]:
    """The job ``code`` run as ``uid`` with the door's URL and the model."""
    argv = [sys.executable, "-c", code, pool_door.url, MODEL]
    if uid == os.getuid():
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return run_as(uid, argv, cwd="/", timeout=60)


def test_the_pool_routes_file_is_0600_and_bad_ones_are_named(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    written = [door.PoolTarget("127.0.0.2:1", "ca.pem", "c.pem", "c.key")]
    door.write_pool_targets(path, written)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert door.read_pool_targets(str(path)) == written
    path.write_text('{"version": 2, "servers": []}')
    with pytest.raises(OSError, match=f"pool targets {path}: version 2"):
        door.read_pool_targets(str(path))


@pytest.mark.server
def test_a_plain_grpc_job_infers_on_a_pool_server_through_the_door_and_loads_nothing(
    pool_door: PoolDoor, cluster: Pool
) -> None:
    before = inferences(cluster.a), inferences(cluster.b)
    result = job(pool_door)
    assert result.returncode == 0, result.stderr
    output, load = result.stdout.strip().split("\n")
    assert output == "[1, 2, 3, 4]"
    assert "not allowed for jobs" in load, load
    assert (inferences(cluster.a), inferences(cluster.b)) == (before[0] + 1, before[1])  # the first listed


#: Many calls in flight on one connection (both directions of the door's TLS side busy at once): a job
#: that prints how many of 200 asynchronous inferences came back right. ``python -c MANY HOST:PORT MODEL``.
MANY = (
    "import sys, threading, numpy as np, tritonclient.grpc as g\n"
    "c = g.InferenceServerClient(sys.argv[1]); done = threading.Semaphore(0); right = []\n"
    "def back(result, error):\n"
    "    right.append(error is None and result.as_numpy('OUTPUT0').tolist() == [1, 2, 3, 4]); done.release()\n"
    "t = g.InferInput('INPUT0', [4], 'INT32'); t.set_data_from_numpy(np.array([1, 2, 3, 4], dtype=np.int32))\n"
    "for _ in range(200): c.async_infer(sys.argv[2], [t], back)\n"
    "for _ in range(200): done.acquire(timeout=60)\n"
    "print(sum(right))\n"
)


@pytest.mark.server
def test_two_hundred_calls_in_flight_on_one_connection_all_come_back(pool_door: PoolDoor) -> None:
    result = job(pool_door, code=MANY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200", result.stderr[-1500:]


@pytest.mark.server
@pytest.mark.skipif(not AS_ROOT, reason="switches users")
def test_another_user_gets_nothing_from_the_pool_route(pool_door: PoolDoor, cluster: Pool) -> None:
    before = inferences(cluster.a)
    result = job(pool_door, OTHER_UID)
    assert result.returncode != 0
    assert "[1, 2, 3, 4]" not in result.stdout
    assert inferences(cluster.a) == before


@pytest.mark.server
def test_the_agents_refresh_writes_the_route_best_first_and_the_door_follows_it(
    pool_door: PoolDoor, cluster: Pool
) -> None:
    """The client glidein's discovery rewrites the door's file: B (lower published queue time) first, a
    draining server left out; the next connection goes to B."""
    soon = str(int(time.time()) + 1)
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority, queue=50.0),
        ad("b", cluster.b.url, cluster.b.authority, queue=1.0),
        ad("c", "127.0.0.5:1", cluster.a.authority, TritonPoolDrainTime=soon),
    )
    time.sleep(1)
    cluster.job()  # a refresh of the client glidein's pool, as its agent does
    written = json.loads(pool_door.targets.read_text())
    assert [server["url"] for server in written["servers"]] == [cluster.b.url, cluster.a.url]
    assert stat.S_IMODE(pool_door.targets.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in pool_door.targets.read_text()
    before = inferences(cluster.a), inferences(cluster.b)
    result = job(pool_door)
    assert result.returncode == 0, result.stderr
    assert (inferences(cluster.a), inferences(cluster.b)) == (before[0], before[1] + 1)


@pytest.mark.server
def test_a_server_whose_certificate_is_not_of_the_listed_ca_gets_no_data(
    pool_door: PoolDoor, cluster: Pool
) -> None:
    """The rogue (127.0.0.4, another CA) listed first with A's CA: the door's handshake fails, the rogue
    receives no byte of the job's, and the job infers on A."""
    (for_a,) = targets_of(cluster, cluster.a)
    rogue = dataclasses.replace(for_a, url=f"{cluster.rogue.address}:{cluster.rogue.port}")
    door.write_pool_targets(pool_door.targets, [rogue, for_a])
    connections, before = cluster.rogue.connections, inferences(cluster.a)
    result = job(pool_door)
    assert result.returncode == 0, result.stderr
    assert inferences(cluster.a) == before + 1
    assert cluster.rogue.connections > connections  # it was tried
    assert bytes(cluster.rogue.received) == b""


@pytest.mark.server
def test_the_agents_pool_door_listens_where_the_startup_published_it(cluster: Pool) -> None:
    """A client glidein's agent serves the pool route on the URL of ``publish.pool_door_values`` (in a
    thread, on the host's network, for its own uid); a job given only that URL infers on a pool server."""
    door.write_pool_targets(pool_discovery.door_targets_path(cluster.work), targets_of(cluster, cluster.b))
    values = dict(publish.pool_door_values(free_port()))
    url = values[publish.POOL_GRPC_URL]
    assert url == f"{values['SONIC_LOCAL_BALANCER_HOST']}:{values['SONIC_LOCAL_BALANCER_PORT']}"
    assert agent.start_pool_door(cluster.work, url) is not None
    before = inferences(cluster.b)
    argv = [sys.executable, "-c", JOB, url, MODEL]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[1, 2, 3, 4]")
    assert inferences(cluster.b) == before + 1


@pytest.mark.server
def test_server_a_killed_the_next_connection_goes_to_b(pool_door: PoolDoor, cluster: Pool) -> None:
    """Last in this module: it stops server A."""
    door.write_pool_targets(pool_door.targets, targets_of(cluster, cluster.a, cluster.b))
    os.killpg(cluster.a.process.pid, signal.SIGKILL)
    cluster.a.process.wait(30)
    before = inferences(cluster.b)
    started = time.monotonic()
    result = job(pool_door)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[1, 2, 3, 4]")
    assert inferences(cluster.b) == before + 1
    assert took < 5, took

"""Pool mode end to end, every part real but the collector (the stand-in condor_status over an ads file):
a pool server glidein (startup, its own CA, its agent's enrolment service), a pool client glidein (its key
in its ad, its agent's discovery and enrolment), and a job of the client glidein that infers on the pool
server with connect(pool=True)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.standin_collector import ADS_VARIABLE, COLLECTOR_VARIABLE, install_condor_dir
from glidein_triton.worker import glidein_paths, pool_files
from glidein_triton.worker.agent_launch import LOG_FILE_NAME
from glidein_triton.worker.state import ServerState

from .support import assert_nothing_left, wait_until

COLLECTOR = "cm.example:9618"
IDENTITY = "T2_Example@frontend.example.org"
SERVER_ADDRESS = "127.0.0.2"

JOB = """
import json, os, time
import numpy as np
import tritonclient.grpc as grpcclient
from glidein_triton.job.client import connect
path = os.path.join(os.environ["_CONDOR_SCRATCH_DIR"], ".glidein_triton", "pool.json")
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not json.load(open(path))["servers"]:
    time.sleep(0.1)
client = connect(pool=True, models=["simple"])
data = np.arange(16, dtype=np.int32).reshape(1, 16)
inputs = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
for tensor in inputs:
    tensor.set_data_from_numpy(data)
print(client.infer("simple", inputs).as_numpy("OUTPUT0").tolist()[0][:4], client.current.url)
"""


def advertise(ads: Path, name: str, attributes: dict[str, str]) -> None:
    """Add the ad of a glidein to the collector's ads (as its startd would, with the glidein's token)."""
    lines = [f"# advertised by: {IDENTITY}", 'MyType = "Machine"', f'Name = "{name}"', f'Machine = "{name}"']
    lines += [f"{key} = {value}" for key, value in sorted(attributes.items())]
    with ads.open("a") as stream:
        stream.write("\n".join(lines) + "\n\n")


def pool_settings(root: Path, role: str) -> dict[str, str]:
    (root / "condor_config").parent.mkdir(parents=True, exist_ok=True)
    (root / "condor_config").write_text(f"COLLECTOR_HOST = {COLLECTOR}\n")  # condor_startup.sh's, later
    return {
        "GLIDEIN_TRITON_POOL": role,
        "GLIDEIN_TRITON_POOL_NAME": "cms",
        "GLIDEIN_TRITON_POOL_IDENTITIES": "*@frontend.example.org",
        "CONDOR_DIR": str(install_condor_dir(root.parent / f"{root.name}-condor")),
        "GLIDEIN_Collector": COLLECTOR,
        "GLIDEIN_Site": "T2_Example",
    }


@pytest.mark.server
def test_a_job_of_a_client_glidein_infers_on_a_pool_server_it_enrolled_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ads = tmp_path / "collector.ads"
    ads.write_text("")
    monkeypatch.setenv(ADS_VARIABLE, str(ads))
    monkeypatch.setenv(COLLECTOR_VARIABLE, COLLECTOR)
    server_root, client_root = tmp_path / "server", tmp_path / "client"
    server = demo.prepare(
        server_root,
        settings={**pool_settings(server_root, "server"), "GLIDEIN_TRITON_ADDRESS": SERVER_ADDRESS},
    )
    # The client's key before its startup, so that its ad is in the collector when its agent first enrols.
    client_pool = pool_files.pool_dir(client_root)
    client_pool.mkdir(parents=True, mode=0o700)
    pool_files.make_key(client_pool / pool_files.CLIENT_KEY)
    client = demo.prepare(client_root, settings={**pool_settings(client_root, "client")})
    started = []
    try:
        result = server.glidein.run_startup(server.environment)
        assert result.returncode == 0, result.stderr
        started.append(server)
        attributes, _ = server.glidein.published()
        advertise(ads, "server-glidein", {k: v for k, v in attributes.items() if k.startswith("TritonPool")})
        result = client.glidein.run_startup(client.environment)
        assert result.returncode == 0, result.stderr
        started.append(client)
        client_attributes, job_environment = client.glidein.published()
        key = pool_files.key_fingerprint(client_pool / pool_files.CLIENT_KEY)
        assert client_attributes["TritonPoolClientKey"] == f'"{key}"'
        advertise(
            ads,
            "client-glidein",
            {"TritonPoolRole": '"client"', "TritonPoolName": '"cms"', "TritonPoolClientKey": f'"{key}"'},
        )
        agent_log = glidein_paths.plugin_dir(client_root) / LOG_FILE_NAME
        assert wait_until(lambda: "1 with a usable certificate" in agent_log.read_text(), timeout=120), (
            agent_log.read_text()
        )
        job = hooks_sim.start_job(
            client.glidein, [sys.executable, "-c", JOB], {**client.environment, **job_environment}
        )
        code, stdout, stderr = job.finish(timeout=120)
        assert code == 0, stderr
        pool_url = attributes["TritonPoolURL"].strip('"')
        assert stdout.split() == ["[0,", "2,", "4,", "6]", pool_url]  # 2 x the input, on the pool server
        job.end()
        enrolled = list((client_pool / pool_files.CLIENT_CERTS_DIR).iterdir())
        assert [oct(path.stat().st_mode & 0o777) for path in enrolled] == ["0o600"]
        server_log = (glidein_paths.plugin_dir(server_root) / LOG_FILE_NAME).read_text()
        assert f"key {key} signed" in server_log
        assert "PRIVATE KEY" not in server_log + agent_log.read_text() + ads.read_text()
    finally:
        for prepared in reversed(started):
            state = ServerState.load(glidein_paths.state_file(prepared.glidein.root))
            prepared.glidein.run_cleanup(prepared.environment)
            assert_nothing_left(prepared.glidein, state)

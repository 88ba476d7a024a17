"""Pool mode's discovery on a client glidein (worker/pool_discovery.py): the query through the stand-in
condor_status, the checks on each server ad, the certificates, and pool.json in a job's sandbox."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from glidein_triton.local import standin_collector as collector
from glidein_triton.worker import glidein_paths, pool_files, sandbox_protocol
from glidein_triton.worker import pool_discovery as discovery
from glidein_triton.worker.agent import Agent
from glidein_triton.worker.state import ServerState

from . import pool_authority
from .pool_authority import Authority, make_authority, make_key
from .support import wait_until as support_wait


def server_ad(name: str, authority: Authority, **overrides: str) -> str:
    """A server ad serving two models, with a published queue time."""
    attributes = {"TritonPoolModels": '"simple,echo"', "TritonPoolQueueTimeMs": "1.5", **overrides}
    return pool_authority.server_ad(name, authority, **attributes)


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    root = tmp_path_factory.mktemp("pki")
    return make_authority(root / "a", "CA a"), make_authority(root / "b", "CA b")


@pytest.fixture
def glidein(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str], Path]:
    """(work dir, its glidein_config, the ads file)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "condor_config").write_text("COLLECTOR_HOST = cm.example\n")
    condor_dir = collector.install_condor_dir(work / "condor")
    ads = tmp_path / "collector.ads"
    monkeypatch.setenv(collector.ADS_VARIABLE, str(ads))
    monkeypatch.setenv(collector.COLLECTOR_VARIABLE, "cm.example:9618")
    config = {
        "CONDOR_DIR": str(condor_dir),
        "GLIDEIN_Collector": "cm.example:9618,cm2.example:9618",
        "GLIDEIN_Site": "Near",
        "GLIDEIN_TRITON_POOL": "client",
        "GLIDEIN_TRITON_POOL_NAME": "cms",
    }
    return work, config, ads


def test_the_query_asks_the_main_collector_for_accepting_servers_of_the_pool_with_a_projection() -> None:
    argv = discovery.status_argv("/c", 'we"ird', discovery.main_collector("cm1:9618;cm2:9618,cm3"))
    assert argv[:3] == ["/c/bin/condor_status", "-pool", "cm1:9618"]
    assert argv[argv.index("-constraint") + 1] == (
        'TritonPoolRole == "server" && TritonPoolName == "we\\"ird" && TritonPoolAccepting'
    )
    assert "-json" in argv
    projected = argv[argv.index("-attributes") + 1].split(",")
    assert "Name" in projected
    assert "TritonPoolCA" in projected
    assert "TritonPoolDrainTime" in projected
    assert discovery.status_argv("/c", "x", "")[1] == "-constraint"  # no collector: HTCondor's own list


def test_discovery_finds_the_servers_of_its_pool_same_site_first(
    glidein: tuple[Path, dict[str, str], Path], authorities: tuple[Authority, Authority]
) -> None:
    work, config, ads = glidein
    a, b = authorities
    ads.write_text(
        "\n".join(
            [
                server_ad("far", a),
                server_ad("near", b, TritonPoolURL='"127.0.0.3:8001"', TritonPoolSite='"Near"'),
                server_ad("other pool", a, TritonPoolName='"atlas"', TritonPoolURL='"127.0.0.5:1"'),
                server_ad("closed", a, TritonPoolAccepting="false", TritonPoolURL='"127.0.0.6:1"'),
                server_ad("forged", a, TritonPoolURL='"127.0.0.7:1"').replace(
                    "# advertised by: Far@frontend\n", ""
                ),
            ]
        )
    )
    found = discovery.discover(work, config, os.environ)
    assert [server.name for server in found] == ["near", "far"]
    assert found[0].ca_fingerprint == b.fingerprint
    assert found[0].ca_der == b.der
    assert found[1].models == ("simple", "echo")
    assert found[1].queue_time_ms == 1.5


def test_no_ads_is_no_servers_and_a_failed_query_says_why(glidein: tuple[Path, dict[str, str], Path]) -> None:
    work, config, ads = glidein
    ads.write_text("")
    assert discovery.discover(work, config, os.environ) == []
    config["GLIDEIN_Collector"] = "elsewhere:9618"
    with pytest.raises(discovery.DiscoveryError, match="Failed to contact collector at elsewhere:9618"):
        discovery.discover(work, config, os.environ)
    (work / "condor_config").unlink()
    with pytest.raises(discovery.DiscoveryError, match="condor_config yet"):
        discovery.discover(work, config, os.environ)


def test_malformed_ads_are_dropped(
    authorities: tuple[Authority, Authority], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = authorities
    good = {
        "Name": "good",
        "TritonPoolURL": "127.0.0.2:8001",
        "TritonPoolSite": "Far",
        "TritonPoolCA": a.base64,
        "TritonPoolCAFingerprint": a.fingerprint,
        "TritonPoolModels": "simple",
        "TritonPoolQueueTimeMs": 2,
        "TritonPoolAccepting": True,
        "TritonPoolDrainTime": 0,
        "AuthenticatedIdentity": "Far@frontend",
    }
    bad = [
        {**good, "Name": "url", "TritonPoolURL": "https://127.0.0.2:8001/x"},
        {**good, "Name": "port", "TritonPoolURL": "127.0.0.2:99999"},
        {**good, "Name": "base64", "TritonPoolCA": "not base64!"},
        {**good, "Name": "der", "TritonPoolCA": "aGVsbG8="},
        {**good, "Name": "mismatch", "TritonPoolCAFingerprint": b.fingerprint},
        {**good, "Name": "model", "TritonPoolModels": "a,../b"},
        {**good, "Name": "queue", "TritonPoolQueueTimeMs": "fast"},
        {key: value for key, value in good.items() if key != "AuthenticatedIdentity"} | {"Name": "anonymous"},
    ]
    found = discovery.candidates([*bad, good, {**good, "Name": "same url"}], "Near")
    assert [server.name for server in found] == ["good"]
    for ad in bad:
        assert f"pool server ad '{ad['Name']}' dropped" in caplog.text
    assert (
        discovery.candidates([good], "", discovery.identities({"GLIDEIN_TRITON_POOL_IDENTITIES": "x@*, y"}))
        == []
    )
    assert (
        len(
            discovery.candidates(
                [good], "", discovery.identities({"GLIDEIN_TRITON_POOL_IDENTITIES": "x,Far@*"})
            )
        )
        == 1
    )


def test_the_query_interval_is_jittered_within_bounds() -> None:
    rng = random.Random(7)  # noqa: S311 (jitter, not a secret)
    delays = [discovery.next_delay(rng) for _ in range(200)]
    low, high = discovery.PERIOD * (1 - discovery.JITTER), discovery.PERIOD * (1 + discovery.JITTER)
    assert all(low <= delay <= high for delay in delays)
    assert max(delays) - min(delays) > discovery.PERIOD * discovery.JITTER  # spread, not one value


def test_output_over_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "MAX_OUTPUT", 1000)
    with pytest.raises(discovery.DiscoveryError, match="printed more than 1000 bytes: killed"):
        discovery.run_bounded(["/bin/sh", "-c", "yes | head -c 100000"], {"PATH": "/usr/bin:/bin"})
    monkeypatch.setattr(discovery, "QUERY_TIMEOUT", 0.3)
    with pytest.raises(discovery.DiscoveryError, match=r"ran past 0\.3 s: killed"):
        discovery.run_bounded(["/bin/sleep", "5"], {})


def enrol(work: Path, authority: Authority, **options: object) -> Path:
    """The certificate enrolment would have stored for this glidein's key at that server."""
    directory = pool_files.pool_dir(work)
    (directory / pool_files.CLIENT_CERTS_DIR).mkdir(parents=True, exist_ok=True)
    key = directory / pool_files.CLIENT_KEY
    if not key.exists():
        make_key(key)
    return authority.issue(key, pool_files.client_cert_path(work, authority.fingerprint), **options)  # type: ignore[arg-type]


def test_pool_json_lists_only_servers_with_a_usable_certificate_and_lands_0600_in_the_sandbox(
    glidein: tuple[Path, dict[str, str], Path], authorities: tuple[Authority, Authority], tmp_path: Path
) -> None:
    work, config, ads = glidein
    a, b = authorities
    ads.write_text(
        "\n".join(
            [
                server_ad("far", a),
                server_ad("near", b, TritonPoolURL='"127.0.0.3:8001"', TritonPoolSite='"Near"'),
            ]
        )
    )
    enrol(work, a)
    pool = discovery.ClientPool(work, config, os.environ, "127.0.0.1:9000")
    sandbox = tmp_path / "execute" / "dir_1"
    sandbox.mkdir(parents=True)
    pool.refresh()
    pool.write_for(str(sandbox))
    job_dir = sandbox / sandbox_protocol.JOB_DIR
    document = json.loads((job_dir / sandbox_protocol.POOL_FILE).read_text())
    assert document["version"] == 1
    assert document["pool"] == "cms"
    assert document["local"] == "127.0.0.1:9000"
    assert [server["name"] for server in document["servers"]] == ["far"]  # no certificate from b yet
    far = document["servers"][0]
    assert far["same_site"] is False
    assert far["models"] == ["simple", "echo"]
    assert far["drain_time"] == 0
    assert far["client_cert_pem"] == pool_files.client_cert_path(work, a.fingerprint).read_text()
    assert far["ca_pem"].strip() == a.cert.read_text().strip()
    key = Path(document["client_key"])
    assert key.parent == job_dir
    assert key.read_bytes() == (pool_files.pool_dir(work) / pool_files.CLIENT_KEY).read_bytes()
    for path in (key, job_dir / sandbox_protocol.POOL_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # enrolled at b meanwhile: the next refresh rewrites the job's file, same-site first
    enrol(work, b)
    pool.refresh()
    document = json.loads((job_dir / sandbox_protocol.POOL_FILE).read_text())
    assert [(s["name"], s["same_site"]) for s in document["servers"]] == [("near", True), ("far", False)]
    # the job ended: its sandbox is forgotten at the next refresh, nothing is made again there
    shutil.rmtree(sandbox)
    pool.refresh()
    assert pool.sandboxes == set()
    assert not sandbox.exists()


def test_certificates_that_are_expiring_server_only_or_from_another_ca_are_not_given_to_jobs(
    tmp_path: Path, authorities: tuple[Authority, Authority]
) -> None:
    a, b = authorities
    work = tmp_path / "w"
    server = discovery.candidate(
        {
            "Name": "s",
            "TritonPoolURL": "h:1",
            "TritonPoolCA": a.base64,
            "TritonPoolCAFingerprint": a.fingerprint,
            "AuthenticatedIdentity": "i",
        }
    )
    assert discovery.usable_entries(work, [server], "") == []  # none held
    cert = enrol(work, a)
    assert len(discovery.usable_entries(work, [server], "")) == 1
    assert discovery.usable_entries(work, [server], "", now=cert.stat().st_mtime + 86400) == []  # expired
    enrol(work, a, usage="serverAuth")
    assert discovery.usable_entries(work, [server], "") == []
    b.issue(
        pool_files.pool_dir(work) / pool_files.CLIENT_KEY, pool_files.client_cert_path(work, a.fingerprint)
    )
    assert discovery.usable_entries(work, [server], "") == []


def test_only_a_client_glidein_has_a_pool() -> None:
    assert discovery.pool_role({}) == "off"
    assert discovery.pool_role({"GLIDEIN_TRITON_POOL": " Client "}) == discovery.CLIENT_ROLE
    assert discovery.pool_name({}) == "default"


@pytest.mark.parametrize("role", ["client", "server", ""])
def test_the_agent_of_a_client_glidein_writes_pool_json_before_the_answer_and_only_then(
    tmp_path: Path, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    glidein_paths.plugin_dir(work).mkdir(parents=True)
    (work / "glidein_config").write_text(f"GLIDEIN_TRITON_POOL {role}\nGLIDEIN_TRITON_POOL_NAME cms\n")
    sandbox = glidein_paths.execute_dir(work) / "dir_1"
    sandbox.mkdir(parents=True)
    (sandbox / sandbox_protocol.JOB_AD_FILE).write_text('GlobalJobId = "j#1"\n')
    agent = Agent(work, ServerState(runtime="process", grpc_port=9001, http_port=1))
    order: list[str] = []
    real_write = discovery.JobDirectory.write
    monkeypatch.setattr(
        discovery.JobDirectory,
        "write",
        lambda self, name, text: (order.append(name), real_write(self, name, text))[1],
    )
    agent.serve(str(sandbox))
    job_dir = sandbox / sandbox_protocol.JOB_DIR
    assert (job_dir / sandbox_protocol.ANSWER_FILE).is_file()
    if role != "client":
        assert agent.pool is None
        assert not (job_dir / sandbox_protocol.POOL_FILE).exists()
        return
    document = json.loads((job_dir / sandbox_protocol.POOL_FILE).read_text())
    assert document["local"] == "127.0.0.1:9001"
    with (work / "glidein_config").open("a") as config:
        config.write("TRITON_GRPC_URL 127.0.0.1:7777\n")
    assert Agent(work, ServerState(runtime="process", grpc_port=9001)).pool.local == "127.0.0.1:7777"  # type: ignore[union-attr]
    assert document["pool"] == "cms"
    assert document["servers"] == []  # not enrolled anywhere yet
    assert order.index(sandbox_protocol.POOL_FILE) < order.index(sandbox_protocol.ANSWER_FILE)


def test_the_agent_queries_once_condor_config_is_there_then_at_jittered_intervals(
    glidein: tuple[Path, dict[str, str], Path],
) -> None:
    work, config, ads = glidein
    ads.write_text("")
    queries: list[float] = []

    def runner(argv: object, environment: object) -> str:
        queries.append(1)
        return ""

    (work / "condor_config").unlink()
    pool = discovery.ClientPool(work, config, os.environ, "", runner=runner)
    pool.start_refresh(100.0)
    assert pool.next_query == 100.0 + discovery.CONFIG_WAIT
    assert not pool.refreshing.is_set()
    (work / "condor_config").write_text("")
    pool.start_refresh(101.0)  # before the next look
    assert not pool.refreshing.is_set()
    pool.start_refresh(102.5)
    assert support_wait(lambda: queries and not pool.refreshing.is_set())
    low = 102.5 + discovery.PERIOD * (1 - discovery.JITTER)
    assert low <= pool.next_query <= 102.5 + discovery.PERIOD * (1 + discovery.JITTER)
    pool.start_refresh(low - 1)
    assert len(queries) == 1


def test_a_refresh_enrols_where_the_glidein_has_no_usable_certificate(
    glidein: tuple[Path, dict[str, str], Path],
    authorities: tuple[Authority, Authority],
    caplog: pytest.LogCaptureFixture,
) -> None:
    work, config, ads = glidein
    a, b = authorities
    ads.write_text(
        "\n".join(
            [
                server_ad("far", a, TritonPoolEnrolURL='"https://127.0.0.2:8443/enrol"'),
                server_ad(
                    "near",
                    b,
                    TritonPoolURL='"127.0.0.3:8001"',
                    TritonPoolEnrolURL='"https://127.0.0.3:8443/enrol"',
                ),
                server_ad("none", b, TritonPoolURL='"127.0.0.4:8001"'),  # publishes no enrolment URL
            ]
        )
    )
    asked: list[str] = []

    def enrolment(where: Path, server: discovery.Candidate) -> None:
        asked.append(server.enrol_url)
        if server.name == "near":
            raise ValueError("refused (403): no authenticated client ad names this key")
        enrol(where, a)

    pool = discovery.ClientPool(work, config, os.environ, "", enrol=enrolment)
    pool.refresh()
    assert asked == ["https://127.0.0.2:8443/enrol", "https://127.0.0.3:8443/enrol"]
    assert [entry.server.name for entry in pool.entries] == ["far"]
    assert "no certificate from https://127.0.0.3:8443/enrol: refused (403)" in caplog.text
    asked.clear()
    pool.refresh()  # far's certificate is kept and usable: only near is asked again
    assert asked == ["https://127.0.0.3:8443/enrol"]


def test_an_enrolment_url_that_is_not_https_enrol_drops_the_ad(
    authorities: tuple[Authority, Authority],
) -> None:
    a, _ = authorities
    ad = {
        "Name": "s",
        "TritonPoolURL": "127.0.0.2:8001",
        "TritonPoolCA": a.base64,
        "TritonPoolCAFingerprint": a.fingerprint,
        "AuthenticatedIdentity": "Far@frontend",
    }
    good = discovery.candidate({**ad, "TritonPoolEnrolURL": "https://127.0.0.2:8443/enrol"})
    assert good.enrol_url == "https://127.0.0.2:8443/enrol"
    assert discovery.candidate(ad).enrol_url == ""
    for bad in ("http://127.0.0.2:8443/enrol", "https://127.0.0.2:8443/../x", "file:///etc/passwd"):
        with pytest.raises(ValueError, match="TritonPoolEnrolURL"):
            discovery.candidate({**ad, "TritonPoolEnrolURL": bad})

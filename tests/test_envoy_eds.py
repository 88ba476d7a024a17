"""``glidein-triton pool envoy-eds`` (operator/envoy_eds.py, pool_cli.py): the EDS document, the filtering of
server ads, the atomic write, and the command through the stand-in condor_status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glidein_triton import cli
from glidein_triton.local import standin_collector as collector
from glidein_triton.operator import envoy_eds, pool_cli

from .pool_authority import Authority, make_authority, server_ad

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    root = tmp_path_factory.mktemp("pki")
    return make_authority(root / "a", "CA a"), make_authority(root / "b", "CA b")


@pytest.fixture
def ads_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in collector's ads file; the stand-in condor_status answers for cm.example only."""
    ads = tmp_path / "collector.ads"
    ads.write_text("")
    monkeypatch.setenv(collector.ADS_VARIABLE, str(ads))
    monkeypatch.setenv(collector.COLLECTOR_VARIABLE, "cm.example:9618")
    return ads


def condor_status(tmp_path: Path) -> str:
    return str(collector.install_condor_dir(tmp_path / "condor") / "bin" / "condor_status")


def run(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    output = tmp_path / "eds" / "triton-pool.json"
    output.parent.mkdir(exist_ok=True)
    arguments = [
        "pool",
        "envoy-eds",
        "--output",
        str(output),
        "--pool",
        "cms",
        "--collector",
        "cm.example:9618",
    ]
    code = cli.main([*arguments, "--condor-status", condor_status(tmp_path), "--once", *extra])
    return code, output


def test_the_weight_halves_every_ten_ms_of_queue_time_within_1_and_100() -> None:
    assert [envoy_eds.weight(q) for q in (0.0, 10.0, 30.0, 90.0, 990.0, 1e9, -5.0)] == [
        100,
        50,
        25,
        10,
        1,
        1,
        100,
    ]


def test_two_ads_give_this_exact_document(
    tmp_path: Path, ads_file: Path, authorities: tuple[Authority, Authority]
) -> None:
    a, b = authorities
    ads_file.write_text(
        server_ad("slot1@gpu1.far", a, TritonPoolURL='"gpu1.far:8001"', TritonPoolQueueTimeMs="10.0")
        + "\n"
        + server_ad("slot1@gpu2.near", b, TritonPoolURL='"10.0.0.7:9001"', TritonPoolSite='"Near"')
    )
    code, output = run(tmp_path, "--site", "Near")
    assert code == 0
    assert output.stat().st_mode & 0o777 == 0o644

    def lb(host: str, port: int, name: str, weight: int, ca: Authority) -> dict[str, object]:
        return {
            "endpoint": {
                "address": {"socket_address": {"address": host, "port_value": port}},
                "hostname": name,
            },
            "load_balancing_weight": weight,
            "metadata": {
                "filter_metadata": {"envoy.transport_socket_match": {"triton_pool_ca": ca.fingerprint[7:]}}
            },
        }

    assignment = {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": "triton-pool",
        "endpoints": [
            {
                "locality": {"zone": "Far"},
                "lb_endpoints": [lb("gpu1.far", 8001, "slot1@gpu1.far", 50, a)],
                "priority": 1,
            },
            {
                "locality": {"zone": "Near"},
                "lb_endpoints": [lb("10.0.0.7", 9001, "slot1@gpu2.near", 100, b)],
                "priority": 0,
            },
        ],
    }
    document = json.loads(output.read_text())
    assert document == {
        "version_info": document["version_info"],
        "type_url": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "resources": [assignment],
    }
    assert len(document["version_info"]) == 16
    # without the gateway's site (or with none of its own there), every locality is priority 0
    code, output = run(tmp_path, "--site", "Elsewhere")
    assert [
        locality["priority"] for locality in json.loads(output.read_text())["resources"][0]["endpoints"]
    ] == [0, 0]


def test_only_accepting_servers_of_the_pool_not_draining_and_well_formed_are_endpoints(
    tmp_path: Path,
    ads_file: Path,
    authorities: tuple[Authority, Authority],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = authorities
    ads = [
        server_ad("good", a, TritonPoolURL='"127.0.0.2:8001"'),
        server_ad("later", a, TritonPoolURL='"127.0.0.3:8001"', TritonPoolDrainTime=str(NOW * 2)),
        server_ad("draining", a, TritonPoolURL='"127.0.0.4:8001"', TritonPoolDrainTime="1"),
        server_ad("full", a, TritonPoolURL='"127.0.0.5:8001"', TritonPoolAccepting="false"),
        server_ad("other-pool", a, TritonPoolURL='"127.0.0.6:8001"', TritonPoolName='"atlas"'),
        server_ad("client", a, TritonPoolURL='"127.0.0.7:8001"', TritonPoolRole='"client"'),
        server_ad(
            "forged-ca", a, TritonPoolURL='"127.0.0.8:8001"', TritonPoolCAFingerprint=f'"{b.fingerprint}"'
        ),
        server_ad("anonymous", a, identity="", TritonPoolURL='"127.0.0.9:8001"'),
        server_ad("bad-url", a, TritonPoolURL='"no port"'),
    ]
    ads_file.write_text("\n".join(ads))
    code, output = run(tmp_path)
    assert code == 0
    hosts = [
        lb["endpoint"]["address"]["socket_address"]["address"]
        for locality in json.loads(output.read_text())["resources"][0]["endpoints"]
        for lb in locality["lb_endpoints"]
    ]
    assert hosts == ["127.0.0.2", "127.0.0.3"]
    err = capsys.readouterr().err
    for name in ("forged-ca", "anonymous", "bad-url"):
        assert f"server ad {name!r} skipped: " in err
    assert "TritonPoolCAFingerprint is not the fingerprint of TritonPoolCA" in err
    assert "2 endpoint(s) in cluster triton-pool" in err


def test_the_drain_margin_and_accepting_are_applied_to_the_ads_themselves(
    authorities: tuple[Authority, Authority],
) -> None:
    a, _ = authorities
    ad = json.loads(
        json.dumps(
            {
                "Name": "x",
                "TritonPoolURL": "h:1",
                "TritonPoolCA": a.base64,
                "TritonPoolCAFingerprint": a.fingerprint,
                "TritonPoolAccepting": True,
                "TritonPoolDrainTime": NOW + 300,
                "AuthenticatedIdentity": "Far@frontend",
            }
        )
    )
    assert [s.name for s in envoy_eds.servers([ad], NOW, drain_margin=299)] == ["x"]
    assert envoy_eds.servers([ad], NOW, drain_margin=300) == []
    # the query asks for accepting servers; an ad that says otherwise anyway is not listed
    assert envoy_eds.servers([{**ad, "TritonPoolAccepting": False}], NOW, drain_margin=0) == []
    assert [s.name for s in envoy_eds.servers([{**ad, "TritonPoolDrainTime": 0}], NOW, drain_margin=1e9)] == [
        "x"
    ]


def test_the_file_is_replaced_by_rename_and_left_alone_when_unchanged(tmp_path: Path) -> None:
    output = tmp_path / "eds.json"
    output.write_text("old")
    old_inode = output.stat().st_ino
    document = envoy_eds.discovery_response([], "triton-pool")
    assert envoy_eds.write(output, document) is True
    assert output.stat().st_ino != old_inode  # a new file moved over the name: what Envoy's watch sees
    assert json.loads(output.read_text())["resources"][0]["endpoints"] == []
    inode, mtime = output.stat().st_ino, output.stat().st_mtime_ns
    assert envoy_eds.write(output, document) is False
    assert (output.stat().st_ino, output.stat().st_mtime_ns) == (inode, mtime)
    assert [path.name for path in tmp_path.iterdir()] == ["eds.json"]  # no temporary file left


def test_a_failing_query_leaves_the_file_and_says_why(
    tmp_path: Path,
    ads_file: Path,
    authorities: tuple[Authority, Authority],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ads_file.write_text(server_ad("good", authorities[0]))
    code, output = run(tmp_path)
    assert code == 0
    before = output.read_bytes()
    code, _ = run(tmp_path, "--collector", "unreachable.example")
    assert code == 1
    assert output.read_bytes() == before
    err = capsys.readouterr().err
    assert f"{output} not updated: " in err
    assert "communication error" in err


def test_a_missing_condor_status_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "eds.json"
    missing = str(tmp_path / "nowhere" / "condor_status")
    arguments = ["pool", "envoy-eds", "--output", str(output), "--condor-status", missing, "--once"]
    assert cli.main(arguments) == 1
    assert f"cannot run {missing}: No such file or directory" in capsys.readouterr().err
    assert not output.exists()


def test_without_condor_status_on_path_the_message_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(["pool", "envoy-eds", "--output", str(tmp_path / "x.json"), "--once"]) == 1
    assert (
        "condor_status is not on PATH: install HTCondor's tools or give --condor-status"
        in capsys.readouterr().err
    )


def test_with_certificates_only_servers_whose_ca_the_gateway_enrolled_at_are_listed(
    tmp_path: Path,
    ads_file: Path,
    authorities: tuple[Authority, Authority],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = authorities
    ads_file.write_text(
        server_ad("at-a", a, TritonPoolURL='"127.0.0.2:8001"')
        + "\n"
        + server_ad("at-b", b, TritonPoolURL='"127.0.0.3:8001"')
    )
    held = tmp_path / "clients"
    held.mkdir()
    (held / f"{a.fingerprint[7:]}.pem").write_text("a certificate")
    code, output = run(tmp_path, "--certificates", str(held))
    assert code == 0
    names = [
        lb["endpoint"]["hostname"]
        for locality in json.loads(output.read_text())["resources"][0]["endpoints"]
        for lb in locality["lb_endpoints"]
    ]
    assert names == ["at-a"]
    assert (
        f"server ad 'at-b' skipped: no client certificate {held / b.fingerprint[7:]}.pem"
        in capsys.readouterr().err
    )


def test_without_once_it_keeps_going_after_a_failed_query_at_the_interval(
    tmp_path: Path,
    ads_file: Path,
    authorities: tuple[Authority, Authority],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ads_file.write_text(server_ad("good", authorities[0]))
    slept: list[float] = []

    class Stop(Exception):
        pass

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            raise Stop
        monkeypatch.setenv(collector.ADS_VARIABLE, str(ads_file))  # the collector answers again

    monkeypatch.setattr(pool_cli.time, "sleep", sleep)
    monkeypatch.setenv(collector.ADS_VARIABLE, "")  # the first query fails
    output = tmp_path / "eds.json"
    arguments = ["envoy-eds", "--output", str(output), "--pool", "cms", "--collector", "cm.example:9618"]
    with pytest.raises(Stop):
        pool_cli.main([*arguments, "--condor-status", condor_status(tmp_path), "--interval", "7"])
    assert slept == [7.0, 7.0]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"glidein-triton pool envoy-eds: {output} not updated: ")
    assert err[1] == f"glidein-triton pool envoy-eds: {output} written: 1 endpoint(s) in cluster triton-pool"


def test_an_output_name_envoy_cannot_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["pool", "envoy-eds", "--output", str(tmp_path / "eds.txt"), "--once"])
    assert exited.value.code == 2
    assert "Envoy reads an EDS file by its extension: end it with .json" in capsys.readouterr().err


def test_an_ipv6_url_is_an_address_without_brackets(authorities: tuple[Authority, Authority]) -> None:
    a, _ = authorities
    ad = {
        "Name": "v6",
        "TritonPoolURL": "[fd00::7]:8001",
        "TritonPoolCA": a.base64,
        "TritonPoolCAFingerprint": a.fingerprint,
        "TritonPoolAccepting": True,
        "AuthenticatedIdentity": "Far@frontend",
    }
    (server,) = envoy_eds.servers([ad], NOW, 0)
    address = envoy_eds.endpoint(server)["endpoint"]
    assert address == {
        "address": {"socket_address": {"address": "fd00::7", "port_value": 8001}},
        "hostname": "v6",
    }

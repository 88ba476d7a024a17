"""examples/envoy/ and docs/pool-gateway.md: the bootstrap reads the file envoy-eds writes for its cluster,
and the page's command writes the document it shows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from glidein_triton import cli
from glidein_triton.local import standin_collector as collector
from glidein_triton.operator import envoy_eds

from .pool_authority import Authority, make_authority
from .test_envoy_eds import server_ad

REPO = Path(__file__).resolve().parent.parent
BOOTSTRAP = REPO / "examples" / "envoy" / "envoy.yaml"
PAGE = (REPO / "docs" / "pool-gateway.md").read_text(encoding="utf-8")
EDS_FILE = "/var/lib/envoy/triton-pool.json"
CERTIFICATES = "/etc/envoy/pool/clients"


def cluster() -> dict[str, object]:
    config = yaml.safe_load(BOOTSTRAP.read_text())
    clusters = config["static_resources"]["clusters"]
    assert [c["name"] for c in clusters] == [envoy_eds.DEFAULT_CLUSTER]
    found: dict[str, object] = clusters[0]
    return found


def test_the_bootstrap_has_an_eds_cluster_fed_by_the_file_envoy_eds_writes() -> None:
    eds = cluster()
    assert eds["type"] == "EDS"
    config = eds["eds_cluster_config"]
    assert config["service_name"] == envoy_eds.DEFAULT_CLUSTER  # the assignment's cluster_name
    assert config["eds_config"]["path_config_source"] == {"path": EDS_FILE}  # watched for moves
    assert f"--output {EDS_FILE}" in PAGE
    assert f"--certificates {CERTIFICATES}" in PAGE


def test_the_bootstrap_speaks_http2_and_mutual_tls_upstream_and_grpc_on_its_listener() -> None:
    eds = cluster()
    options = eds["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]
    (match,) = eds["transport_socket_matches"]
    assert list(match["match"]) == [envoy_eds.CA_KEY]
    context = match["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2"]
    (certificate,) = context["tls_certificates"]
    assert certificate["certificate_chain"]["filename"].startswith(CERTIFICATES + "/")
    default = eds["transport_socket"]["typed_config"]
    assert default["@type"].endswith("UpstreamTlsContext")  # an unmatched endpoint gets TLS, never plaintext
    assert "tls_certificates" not in default["common_tls_context"]
    config = yaml.safe_load(BOOTSTRAP.read_text())
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    assert manager["typed_config"]["codec_type"] == "HTTP2"
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert [route["route"]["cluster"] for route in routes] == [envoy_eds.DEFAULT_CLUSTER]


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    root = tmp_path_factory.mktemp("pki")
    return make_authority(root / "far", "CA far"), make_authority(root / "near", "CA near")


def test_the_pages_command_writes_the_document_it_shows(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    authorities: tuple[Authority, Authority],
    capsys: pytest.CaptureFixture[str],
) -> None:
    far, near = authorities
    ads = tmp_path / "collector.ads"
    ads.write_text(
        server_ad("slot1@gpu1.far", far, TritonPoolURL='"gpu1.far:8001"', TritonPoolQueueTimeMs="10.0")
        + "\n"
        + server_ad("slot1@gpu2.near", near, TritonPoolURL='"10.0.0.7:9001"', TritonPoolSite='"Near"')
    )
    monkeypatch.setenv(collector.ADS_VARIABLE, str(ads))
    (tmp_path / "condor_config").write_text("COLLECTOR_HOST = cm.example\n")
    monkeypatch.setenv("CONDOR_CONFIG", str(tmp_path / "condor_config"))
    bin_dir = collector.install_condor_dir(tmp_path / "condor") / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    held = tmp_path / "clients"
    held.mkdir()
    for authority in authorities:
        (held / f"{authority.fingerprint[7:]}.pem").write_text("a certificate")
    output = tmp_path / "triton-pool.json"

    (command,) = re.findall(r"```bash\n(glidein-triton pool envoy-eds .*?)\n```", PAGE)
    command = command.replace(EDS_FILE, str(output)).replace(CERTIFICATES, str(held))
    assert cli.main(shlex.split(command)[1:]) == 0
    said = " ".join(PAGE.split("prints `")[1].split("` on stderr")[0].split())
    assert capsys.readouterr().err == said.replace(EDS_FILE, str(output)) + "\n"

    (shown,) = re.findall(r"```json\n(.*?)```", PAGE, re.DOTALL)
    written = output.read_text()
    version = json.loads(written)["version_info"]
    expected = shown.replace("CA_FAR", far.fingerprint[7:]).replace("CA_NEAR", near.fingerprint[7:])
    assert written == expected.replace('"VERSION"', f'"{version}"')

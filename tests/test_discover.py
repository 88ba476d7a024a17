"""``glidein-triton discover`` on ClassAds built here (no collector), and its errors with a real one."""

from __future__ import annotations

import json

import classad2
import pytest

from glidein_triton.job import discover

GPU_SLOT = classad2.parseOne(
    """
    Name = "slot1@glidein_42@gpu01.example.org"
    Machine = "gpu01.example.org"
    GLIDEIN_Site = "SITE_A"
    HasTriton = true
    TritonGRPCURL = "127.0.0.1:40001"
    TritonHTTPURL = "127.0.0.1:40000"
    TritonGPUs = 2
    TritonVersion = "2.51.0"
    TritonLoadedModels = "simple, densenet_onnx"
    """
)
CPU_SLOT = classad2.ClassAd(
    {
        "Name": "slot1@glidein_7@cpu01.example.org",
        "HasTriton": True,
        "TritonGRPCURL": "127.0.0.1:50001",
        "TritonGPUs": 0,
        "TritonLoadedModels": ["simple"],
    }
)
NO_TRITON = classad2.ClassAd({"Name": "slot1@plain", "HasTriton": False})
NO_PLUGIN = classad2.ClassAd({"Name": "slot1@old"})


def test_the_constraint_selects_only_slots_with_a_server() -> None:
    constraint = classad2.ExprTree(discover.CONSTRAINT)
    assert [constraint.eval(ad) for ad in (GPU_SLOT, CPU_SLOT, NO_TRITON, NO_PLUGIN)] == [
        True,
        True,
        False,
        False,
    ]


def test_records_carry_typed_values_and_model_lists() -> None:
    record = discover.slot_record(GPU_SLOT)
    assert record == {
        "name": "slot1@glidein_42@gpu01.example.org",
        "machine": "gpu01.example.org",
        "site": "SITE_A",
        "grpc_url": "127.0.0.1:40001",
        "http_url": "127.0.0.1:40000",
        "gpus": 2,
        "gpu_names": None,
        "version": "2.51.0",
        "models": ["simple", "densenet_onnx"],
    }
    assert discover.slot_record(CPU_SLOT)["models"] == ["simple"]


def test_table_has_one_sorted_line_per_slot_and_dashes_for_missing_values() -> None:
    lines = discover.render([GPU_SLOT, CPU_SLOT]).splitlines()
    assert lines[0].split() == ["SLOT", "SITE", "GRPC", "HTTP", "GPUS", "VERSION", "MODELS"]
    assert lines[1].split() == [
        "slot1@glidein_42@gpu01.example.org",
        "SITE_A",
        "127.0.0.1:40001",
        "127.0.0.1:40000",
        "2",
        "2.51.0",
        "simple,densenet_onnx",
    ]
    assert lines[2].split() == [
        "slot1@glidein_7@cpu01.example.org",
        "-",
        "127.0.0.1:50001",
        "-",
        "0",
        "-",
        "simple",
    ]
    assert lines[3] == "2 Triton slot(s)"
    assert lines[1].index("127.0.0.1") == lines[2].index("127.0.0.1")  # aligned columns


def test_json_output_round_trips() -> None:
    records = json.loads(discover.render([GPU_SLOT, CPU_SLOT], as_json=True))
    assert [record["name"] for record in records] == sorted(record["name"] for record in records)
    assert records[0]["gpus"] == 2
    assert records[0]["models"] == ["simple", "densenet_onnx"]
    assert records[1]["http_url"] is None


def test_main_prints_the_queried_slots(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[str | None, str]] = []

    def query(pool: str | None, constraint: str) -> list[classad2.ClassAd]:
        asked.append((pool, constraint))
        return [GPU_SLOT]

    monkeypatch.setattr(discover, "query_slots", query)
    assert discover.main(["--pool", "cm.example.org", "--constraint", "TritonGPUs > 0", "--json"]) == 0
    assert asked == [("cm.example.org", "(HasTriton =?= True) && (TritonGPUs > 0)")]
    assert json.loads(capsys.readouterr().out)[0]["gpus"] == 2


def test_main_says_when_no_slot_matches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(discover, "query_slots", lambda pool, constraint: [])
    assert discover.main(["--pool", "cm.example.org"]) == 0
    assert capsys.readouterr().out == "no slot with HasTriton =?= True in cm.example.org\n"


def test_unreachable_collector_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert discover.main(["--pool", "127.0.0.1:1"]) == 1
    assert (
        "discover: cannot query 127.0.0.1:1 for 'HasTriton =?= True': Failed communication"
        in capsys.readouterr().err
    )


def test_a_bad_constraint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        discover.main(["--constraint", "TritonGPUs >"])
    assert exited.value.code == 2
    assert "--constraint 'TritonGPUs >' is not a ClassAd expression" in capsys.readouterr().err

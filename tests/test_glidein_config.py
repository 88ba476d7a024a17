"""glidein_config reading (GlideinWMS rules) and writing through add_config_line.source."""

from __future__ import annotations

from pathlib import Path

import pytest

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker.errors import CorruptionError
from glidein_triton.worker.glidein_config import CondorVar, GlideinConfig, parse_glidein_config, publish


def test_last_line_wins_and_value_is_rest_of_line() -> None:
    text = "A 1\nB two words  \nA 3\n"
    assert parse_glidein_config(text) == {"A": "3", "B": "two words  "}


def test_lines_without_space_and_empty_values() -> None:
    values = parse_glidein_config("LONELY\nEMPTY \n# --- User Parameters ---\nX  leading space\n")
    assert "LONELY" not in values
    assert values["EMPTY"] == ""
    assert values["X"] == " leading space"


def test_missing_keys_and_the_work_dir(tmp_path: Path) -> None:
    path = tmp_path / "glidein_config"
    path.write_text("ENTRY_GLIDEIN_TRITON_DIR /e\nGLIDECLIENT_GLIDEIN_TRITON_DIR /c\n")
    config = GlideinConfig.read(path)
    assert config.get("NOT_THERE", "default") == "default"
    assert config.get("ENTRY_GLIDEIN_TRITON_DIR") == "/e"
    assert config.work_dir == tmp_path


def test_unreadable_config_is_corruption(tmp_path: Path) -> None:
    with pytest.raises(CorruptionError, match="cannot read glidein_config"):
        GlideinConfig.read(tmp_path / "absent")


def test_publish_writes_config_and_condor_vars(glidein: SimulatedGlidein) -> None:
    config = GlideinConfig.read(glidein.config_path)
    publish(
        config,
        [("TRITON_GRPC_URL", "127.0.0.1:9001"), ("TRITON_GPU_NAMES", "NVIDIA H100 80GB HBM3")],
        [CondorVar("TRITON_GRPC_URL", "S", "TritonGRPCURL", "TRITON_GRPC_URL")],
    )
    published = glidein.config()
    assert published["TRITON_GRPC_URL"] == "127.0.0.1:9001"
    assert published["TRITON_GPU_NAMES"] == "NVIDIA H100 80GB HBM3"
    condor_vars = Path(published["CONDOR_VARS_FILE"]).read_text()
    assert condor_vars == "TRITON_GRPC_URL S - TritonGRPCURL N Y TRITON_GRPC_URL\n"


def test_publish_twice_keeps_one_condor_vars_line_and_latest_value(glidein: SimulatedGlidein) -> None:
    config = GlideinConfig.read(glidein.config_path)
    var = CondorVar("HAS_TRITON", "C", "HasTriton", "HAS_TRITON")
    publish(config, [("HAS_TRITON", "False")], [var])
    publish(config, [("HAS_TRITON", "True")], [var])
    assert glidein.config()["HAS_TRITON"] == "True"
    lines = Path(glidein.config()["CONDOR_VARS_FILE"]).read_text().splitlines()
    assert lines == ["HAS_TRITON C - HasTriton N Y HAS_TRITON"]


def test_publish_without_helper_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "glidein_config"
    path.write_text("ADD_CONFIG_LINE_SOURCE /nowhere/add_config_line.source\n")
    with pytest.raises(CorruptionError, match="ADD_CONFIG_LINE_SOURCE"):
        publish(GlideinConfig.read(path), [("A", "b")], [])


def test_publish_rejects_multiline_values(glidein: SimulatedGlidein) -> None:
    with pytest.raises(ValueError, match="single lines"):
        publish(GlideinConfig.read(glidein.config_path), [("A", "one\ntwo")], [])
    assert "A" not in glidein.config()

"""The job-side guides: their model configurations parse as Triton's ModelConfig, their Python compiles,
and the examples' config.pbtxt files are valid too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from glidein_triton.job.submit_example import JobRequest, submit_description

REPO = Path(__file__).resolve().parent.parent
GUIDES = [
    REPO / "docs" / "user-guide.md",
    REPO / "docs" / "pytorch-to-triton.md",
    REPO / "examples" / "README.md",
]


def blocks(language: str) -> list[tuple[str, str]]:
    """(guide name, code) of every fenced block in ``language``."""
    found = []
    for guide in GUIDES:
        for code in re.findall(rf"```{language}\n(.*?)```", guide.read_text(), re.DOTALL):
            found.append((guide.name, code))
    return found


def parse_model_config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize(("guide", "code"), blocks("protobuf"))
def test_model_configurations_in_the_guides_are_valid(guide: str, code: str) -> None:
    config = parse_model_config(code)
    assert config.name
    assert config.input
    assert config.output


@pytest.mark.parametrize(("guide", "code"), blocks("python"))
def test_python_in_the_guides_compiles(guide: str, code: str) -> None:
    compile(code, guide, "exec")


@pytest.mark.parametrize(
    "path", sorted((REPO / "examples").rglob("config.pbtxt")), ids=lambda path: path.parent.name
)
def test_example_model_configurations_are_valid(path: Path) -> None:
    config = parse_model_config(path.read_text())
    assert config.name == path.parent.name  # Triton requires the directory name
    for output in config.output:
        if output.label_filename:
            assert (path.parent / output.label_filename).is_file()


def test_a_wrong_field_is_caught() -> None:
    with pytest.raises(text_format.ParseError, match="no field named"):
        parse_model_config('name: "x"\nmax_batch: 4\n')


def test_guides_have_blocks_to_check() -> None:
    assert len(blocks("protobuf")) >= 2
    assert len(blocks("python")) >= 5


def test_the_submit_description_shown_in_the_user_guide_is_what_submit_example_writes() -> None:
    guide = (REPO / "docs" / "user-guide.md").read_text()
    shown = re.search(r"```\n(universe = vanilla\n.*?)```", guide, re.DOTALL)
    assert shown is not None
    shown_lines = shown.group(1).split("...\n")[0].splitlines()
    request = JobRequest(
        models=("my_model",),
        image="/cvmfs/unpacked.cern.ch/registry.example.org/myvo/tritonclient:2.51.0",
        model_repository="/cvmfs/myvo.example.org/triton/models",
    )
    written = submit_description(request).splitlines()
    start = written.index("universe = vanilla")
    assert written[start : start + len(shown_lines)] == shown_lines

"""The operator's policy for job models: allowed prefixes on resolved paths, nothing writable by the
glidein's user, code-bearing models only from repositories trusted for code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glidein_triton.worker.job_policy import Policy, PolicyError, code_reason

NOBODY = 65534  # a user that is not the glidein's (these tests may run as root, which ignores mode bits)
ONNX = 'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
PYTHON = 'backend: "python"\nmax_batch_size: 0\n'


def model(repository: Path, name: str, config: str, files: dict[str, str] | None = None) -> Path:
    directory = repository / name
    (directory / "1").mkdir(parents=True)
    (directory / "config.pbtxt").write_text(config)
    for relative, text in (files or {"1/model.onnx": "weights"}).items():
        (directory / relative).write_text(text)
    return directory


def hand_over(root: Path) -> None:
    """Give ``root`` to another user, read-only for everyone else (as a CVMFS repository is)."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chown(path, NOBODY, NOBODY)
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def cvmfs(tmp_path: Path) -> Path:
    """Two VO repositories: ``data`` (job repositories) and ``code`` (trusted for code)."""
    for name in ("data", "code"):
        model(tmp_path / "cvmfs" / name, "onnx_model", ONNX)
        model(tmp_path / "cvmfs" / name, "python_model", PYTHON, {"1/model.py": "print()"})
    hand_over(tmp_path / "cvmfs")
    return tmp_path / "cvmfs"


def policy(cvmfs: Path) -> Policy:
    return Policy([str(cvmfs / "data")], [str(cvmfs / "code")])


def test_data_models_from_job_repositories_code_only_from_trusted(cvmfs: Path) -> None:
    allowed = policy(cvmfs)
    assert allowed.model_directory(str(cvmfs / "data"), "onnx_model") == str(cvmfs / "data" / "onnx_model")
    assert allowed.model_directory(str(cvmfs / "code"), "python_model") == str(
        cvmfs / "code" / "python_model"
    )
    assert allowed.model_directory(str(cvmfs / "code"), "onnx_model") == str(cvmfs / "code" / "onnx_model")
    with pytest.raises(
        PolicyError, match=r"python_model: runs code in the server \(backend 'python'\).*CODE"
    ):
        allowed.model_directory(str(cvmfs / "data"), "python_model")


def test_no_prefixes_no_job_repositories(cvmfs: Path) -> None:
    with pytest.raises(PolicyError, match="the operator allows none"):
        Policy([], []).model_directory(str(cvmfs / "data"), "onnx_model")


def test_resolved_paths_cannot_leave_the_prefixes(cvmfs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "execute" / "dir_1" / "models"  # another job's sandbox
    model(elsewhere, "onnx_model", ONNX)
    hand_over(tmp_path / "execute")
    allowed = policy(cvmfs)
    with pytest.raises(PolicyError, match="is not under a job repository the operator allows"):
        allowed.model_directory(str(elsewhere), "onnx_model")
    with pytest.raises(PolicyError, match="is not under a job repository"):
        allowed.model_directory(
            str(cvmfs / "data" / ".." / ".." / "execute" / "dir_1" / "models"), "onnx_model"
        )
    links = tmp_path / "links"  # a job's own repository of links into the allowed prefix and out of it
    links.mkdir()
    (links / "escape").symlink_to(elsewhere / "onnx_model")
    (links / "inside").symlink_to(cvmfs / "data" / "onnx_model")
    with pytest.raises(PolicyError, match="is not under a job repository"):
        allowed.model_directory(str(links), "escape")
    assert allowed.model_directory(str(links), "inside") == str(cvmfs / "data" / "onnx_model")
    with pytest.raises(PolicyError, match="no model directory"):
        allowed.model_directory(str(cvmfs / "data"), "missing")


def test_nothing_the_glidein_user_can_change(cvmfs: Path, tmp_path: Path) -> None:
    allowed = policy(cvmfs)
    weights = cvmfs / "data" / "onnx_model" / "1" / "model.onnx"
    os.chown(weights, os.geteuid(), os.getegid())  # the owner can always chmod it back
    weights.chmod(0o444)
    with pytest.raises(PolicyError, match=r"model.onnx is writable by the glidein's user"):
        allowed.model_directory(str(cvmfs / "data"), "onnx_model")
    os.chown(weights, NOBODY, NOBODY)
    (cvmfs / "data" / "onnx_model" / "1").chmod(0o757)  # writable by others
    with pytest.raises(PolicyError, match="/1 is writable"):
        allowed.model_directory(str(cvmfs / "data"), "onnx_model")
    (cvmfs / "data" / "onnx_model" / "1").chmod(0o755)
    nested = tmp_path / "cvmfs" / "data" / "vo"  # a directory between the prefix and the model
    model(nested, "deep", ONNX)
    hand_over(nested / "deep")
    with pytest.raises(PolicyError, match=r"data/vo is writable"):
        allowed.model_directory(str(nested), "deep")
    hand_over(nested)
    assert allowed.model_directory(str(nested), "deep") == str(nested / "deep")
    (nested / "deep" / "1" / "extra").symlink_to(tmp_path / "outside")
    with pytest.raises(PolicyError, match="links outside the allowed job repositories"):
        allowed.model_directory(str(nested), "deep")


@pytest.mark.parametrize(
    ("config", "files", "reason"),
    [
        ('backend: "onnxruntime"\n', {"1/model.onnx": ""}, ""),
        ('platform: "tensorrt_plan"\n', {"1/model.plan": ""}, ""),
        ('platform: "pytorch_libtorch"\n', {"1/model.pt": ""}, ""),
        ('platform: "ensemble"\n', {}, ""),
        ('backend: "python"\n', {"1/model.py": ""}, "backend 'python'"),
        ('backend: "mycustom"\n', {}, "backend 'mycustom'"),
        (
            'backend: "onnxruntime"\n',
            {"1/libtriton_onnxruntime.so": ""},
            "the file 1/libtriton_onnxruntime.so",
        ),
        ('backend: "onnxruntime"\n', {"1/model.onnx": "", "helper.so.1": ""}, "the file helper.so.1"),
        ('backend: "pytorch"\n', {"1/model.py": ""}, "the file 1/model.py"),
        ('backend: "onnxruntime"\nruntime: "model.py"\n', {}, "a runtime"),
        (
            'backend: "onnxruntime"\nparameters: { key: "EXECUTION_ENV_PATH", value: {string_value: "e.tgz"} }\n',
            {},
            "an execution environment",
        ),
        (
            'backend: "onnxruntime"\nmodel_repository_agents { agents [ { name: "x" } ] }\n',
            {},
            "repository agents",
        ),
        ('platform: "custom"\n', {}, "platform 'custom'"),
        ("max_batch_size: 8\n", {"1/model.onnx": ""}, "no backend or platform"),
    ],
)
def test_code_bearing_models_from_their_configuration(
    tmp_path: Path, config: str, files: dict[str, str], reason: str
) -> None:
    directory = model(tmp_path, "m", config, files)
    found = code_reason(str(directory))
    assert found.startswith(reason) if reason else found == ""


def test_a_model_without_configuration_counts_as_code(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    assert code_reason(str(tmp_path / "m")).startswith("no readable config.pbtxt")

"""The operator's policy for job models: config.pbtxt decided on as Triton parses it, the whole tree walked
(links, owners, modes), and the private snapshot that the server loads instead of the source."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from glidein_triton.worker import model_snapshot
from glidein_triton.worker.job_policy import CODE_FIELDS, Policy, PolicyError, Refusal, Vetted, decide

from .support import AS_ROOT, OTHER_UID, PILOT_UID, hand_over, run_as, user_directory

ONNX = 'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
PYTHON = 'backend: "python"\nmax_batch_size: 0\n'
CODE_PREFIX = "runs code in the server"

needs_root = pytest.mark.skipif(not AS_ROOT, reason="gives files to other users (chown)")


def model(repository: Path, name: str, config: str, files: dict[str, str] | None = None) -> Path:
    directory = repository / name
    (directory / "1").mkdir(parents=True)
    (directory / "config.pbtxt").write_text(config)
    for relative, text in (files or {"1/model.onnx": "weights"}).items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    return directory


@pytest.fixture
def cvmfs(tmp_path: Path) -> Path:
    """Two VO repositories owned by another user than the glidein's: ``data`` (job repositories) and
    ``code`` (trusted for code)."""
    for name in ("data", "code"):
        model(tmp_path / "cvmfs" / name, "onnx_model", ONNX)
        model(tmp_path / "cvmfs" / name, "python_model", PYTHON, {"1/model.py": "print()"})
    return hand_over(tmp_path / "cvmfs")


def policy(cvmfs: Path, size_limit: int = 1 << 20) -> Policy:
    return Policy([str(cvmfs / "data")], [str(cvmfs / "code")], size_limit)


def vet(allowed: Policy, repository: Path, name: str, snapshot: Path) -> Refusal | Vetted:
    directory, prefix = allowed.locate(str(repository), name)
    return allowed.vet(directory, prefix, str(snapshot))


# The decision on config.pbtxt, as Triton reads it.

RUNTIME = Vetted(CODE_FIELDS["runtime"])
ENV_PATH = Vetted("the parameter 'EXECUTION_ENV_PATH'")


@pytest.mark.parametrize(
    ("config", "files", "decision"),
    [
        ('backend: "onnxruntime"\n', ["1/model.onnx"], Vetted()),
        ('platform: "tensorrt_plan"\n', ["1/model.plan"], Vetted()),
        ('platform: "pytorch_libtorch"\n', ["1/model.pt"], Vetted()),
        (
            'backend: "onnxruntime"\nparameters { key: "intra_op_thread_count" value { string_value: "1" } }\n',
            [],
            Vetted(),
        ),
        ('backend: "python"\n', ["1/model.py"], Vetted("backend 'python'")),
        ('backend: "mycustom"\n', [], Vetted("backend 'mycustom'")),
        ('platform: "custom"\n', [], Vetted("platform 'custom'")),
        (
            "max_batch_size: 8\n",
            ["1/model.onnx"],
            Vetted("no backend or platform in its config (Triton would pick one from the files)"),
        ),
        (
            'backend: "onnxruntime"\n',
            ["1/libtriton_onnxruntime.so"],
            Vetted("the file 1/libtriton_onnxruntime.so"),
        ),
        ('backend: "onnxruntime"\n', ["1/model.onnx", "helper.so.1"], Vetted("the file helper.so.1")),
        ('backend: "pytorch"\n', ["1/model.py"], Vetted("the file 1/model.py")),
        ('backend: "onnxruntime"\nruntime: "model.py"\n', [], RUNTIME),
        # the bypasses of the line-by-line reading
        ('name: "m" platform: "onnxruntime_onnx" runtime: "evil.bin"\n', ["evil.bin"], RUNTIME),
        ('platform: "onnxruntime_onnx" max_batch_size: 0, runtime: "evil.bin"\n', [], RUNTIME),
        ("backend: 'python'\n", ["1/model.py"], Vetted("backend 'python'")),
        ('platform: "onnxruntime_onnx"\nname: "m" backend: "python"\n', [], Vetted("backend 'python'")),
        ('platform: "onnxruntime_onnx" backend: "py" "thon"\n', [], Vetted("backend 'python'")),
        ('backend: "\\x70ython"\n', [], Vetted("backend 'python'")),
        (
            'backend: "onnxruntime"\nmodel_operations { op_library_filename: "libcustom.bin" }\n',
            [],
            Vetted(CODE_FIELDS["model_operations"]),
        ),
        (
            'backend: "onnxruntime"\nmodel_repository_agents { agents [ { name: "x" } ] }\n',
            [],
            Vetted(CODE_FIELDS["model_repository_agents"]),
        ),
        (
            'backend: "onnxruntime"\nparameters { key: "EXECUTION_ENV_PATH", value: {string_value: "e.tgz"} }\n',
            [],
            ENV_PATH,
        ),
        (
            'backend: "onnxruntime"\nparameters { key: "EXECUTION_" "ENV_PATH" value { string_value: "e" } }\n',
            [],
            ENV_PATH,
        ),
        (
            'backend: "onnxruntime"\nparameters: [ { key: "EXECUTION\\x5fENV_PATH" value { string_value: "e" } } ]\n',
            [],
            ENV_PATH,
        ),
        (
            'backend: "onnxruntime"\nparameters < key: "X" value < string_value: "$$TRITON_MODEL_DIRECTORY/e" > >\n',
            [],
            Vetted("the parameter 'X' (its value '$$TRITON_MODEL_DIRECTORY/e' names a file)"),
        ),
        (
            'platform: "onnxruntime_onnx"\noptimization { execution_accelerators { gpu_execution_accelerator [ '
            '{ name: "tensorrt" parameters { key: "trt_engine_cache_path" value: "/tmp/x" } } ] } }\n',
            [],
            Vetted("the parameter 'trt_engine_cache_path'"),
        ),
        (
            'platform: "ensemble"\nensemble_scheduling { step [ { model_name: "a" model_version: -1 }, '
            '{ model_name: "b" }, { model_name: "a" } ] }\n',
            [],
            Vetted("", ("a", "b")),
        ),
    ],
)
def test_the_decision_on_the_configuration(config: str, files: list[str], decision: Vetted) -> None:
    assert decide(config, files) == decision


@pytest.mark.parametrize(
    ("config", "refusal"),
    [
        (
            'backend: "onnxruntime"\nruntime: "a" runtime: "b"\n',
            "config.pbtxt: runtime is given more than once",
        ),
        ('backend: "onnxruntime"\nbackend: "python"\n', "config.pbtxt: backend is given more than once"),
        ("backend: python\n", "config.pbtxt: backend (line 1) is not a quoted string"),
        (
            'backend: "onnxruntime"\nexecution_env: "x"\n',
            "config.pbtxt: execution_env is not a field of Triton's model configuration",
        ),
        ('backend: "python', "config.pbtxt: line 1, column 10: unexpected character '\"'"),
        (
            'platform: "onnxruntime_onnx"\nbackend "python"\n',
            "config.pbtxt: line 2, column 9: expected ':', '{' or '<' after a field name, found '\"python\"'",
        ),
        (
            'platform: "onnxruntime_onnx"\ndefault_model_filename: "../../other/1/model.onnx"\n',
            "config.pbtxt: default_model_filename '../../other/1/model.onnx' is not a file name in the model "
            "directory",
        ),
        (
            'platform: "onnxruntime_onnx"\noutput { name: "y" label_filename: "/home/pilot/x509up" }\n',
            "config.pbtxt: label_filename '/home/pilot/x509up' is not a file name in the model directory",
        ),
        (
            'platform: "onnxruntime_onnx"\ncc_model_filenames { key: "8.0" value: ".." }\n',
            "config.pbtxt: cc_model_filenames '..' is not a file name in the model directory",
        ),
        (
            'platform: "onnxruntime_onnx"\nmodel_warmup { inputs { key: "x" value { input_data_file: "../../p" } } }',
            "config.pbtxt: input_data_file '../../p' is not a file name in the model directory",
        ),
        (
            'platform: "ensemble"\nensemble_scheduling { step { model_name: "a" model_namespace: "n" } }',
            "config.pbtxt: an ensemble step names a model namespace",
        ),
        (
            'platform: "ensemble"\nensemble_scheduling { step { model_version: 1 } }',
            "config.pbtxt: an ensemble step (line 2) needs one model_name",
        ),
    ],
)
def test_configurations_refused_from_any_repository(config: str, refusal: str) -> None:
    assert decide(config, []) == Refusal(refusal)


# The prefixes and the walk of the tree.


def test_data_models_from_job_repositories_code_only_from_trusted(cvmfs: Path, tmp_path: Path) -> None:
    allowed = policy(cvmfs)
    assert vet(allowed, cvmfs / "data", "onnx_model", tmp_path / "s1") == Vetted()
    assert vet(allowed, cvmfs / "code", "python_model", tmp_path / "s2") == Vetted("backend 'python'")
    assert vet(allowed, cvmfs / "code", "onnx_model", tmp_path / "s3") == Vetted()
    refused = vet(allowed, cvmfs / "data", "python_model", tmp_path / "s4")
    assert refused == Refusal(
        f"{CODE_PREFIX} (backend 'python'); such models load only from repositories trusted for code "
        f"(GLIDEIN_TRITON_CODE_REPOSITORIES: {cvmfs / 'code'})"
    )
    assert not (tmp_path / "s4").exists()  # a refused model leaves no snapshot


def test_no_prefixes_no_job_repositories(cvmfs: Path) -> None:
    with pytest.raises(PolicyError, match="the operator allows none"):
        Policy([], []).locate(str(cvmfs / "data"), "onnx_model")


def test_resolved_paths_cannot_leave_the_prefixes(cvmfs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "execute" / "dir_1" / "models"  # another job's sandbox
    model(elsewhere, "onnx_model", ONNX)
    hand_over(tmp_path / "execute")
    allowed = policy(cvmfs)
    with pytest.raises(PolicyError, match="is not under a job repository the operator allows"):
        allowed.locate(str(elsewhere), "onnx_model")
    with pytest.raises(PolicyError, match="is not under a job repository"):
        allowed.locate(str(cvmfs / "data" / ".." / ".." / "execute" / "dir_1" / "models"), "onnx_model")
    links = tmp_path / "links"  # a job's own repository of links into the allowed prefix and out of it
    links.mkdir()
    (links / "escape").symlink_to(elsewhere / "onnx_model")
    (links / "inside").symlink_to(cvmfs / "data" / "onnx_model")
    with pytest.raises(PolicyError, match="is not under a job repository"):
        allowed.locate(str(links), "escape")
    assert allowed.locate(str(links), "inside") == (str(cvmfs / "data" / "onnx_model"), str(cvmfs / "data"))
    with pytest.raises(PolicyError, match="no model directory"):
        allowed.locate(str(cvmfs / "data"), "missing")


@needs_root
def test_a_version_directory_that_is_a_link_is_refused(cvmfs: Path, tmp_path: Path) -> None:
    """A link to a directory is never followed by the walk and never skipped: refused, inside the
    prefix or out of it (a libtriton_<backend>.so or model.py behind it would be loaded)."""
    data = cvmfs / "data"
    behind = model(tmp_path / "other", "lib", ONNX, {"1/libtriton_onnxruntime.so": "ELF"})
    hand_over(tmp_path / "other")
    for name, target, refusal in [
        ("outside", behind / "1", f"1 links outside the model directory (to {behind / '1'})"),
        ("sibling", data / "python_model" / "1", "1 links outside the model directory"),
        ("itself", Path("2"), "1 links to a directory (2)"),
    ]:
        directory = model(data, name, ONNX, {"2/model.onnx": "w"})
        (directory / "1").rmdir()
        (directory / "1").symlink_to(target)
        hand_over(directory)
        decision = vet(policy(cvmfs), data, name, tmp_path / f"snapshot-{name}")
        assert isinstance(decision, Refusal)
        assert decision.reason.startswith(refusal), decision
        assert not (tmp_path / f"snapshot-{name}").exists()


@needs_root
def test_links_to_files_inside_the_model_are_copied_as_files(cvmfs: Path, tmp_path: Path) -> None:
    directory = model(cvmfs / "data", "linked", ONNX, {"weights.onnx": "the weights"})
    (directory / "1" / "model.onnx").symlink_to("../weights.onnx")
    hand_over(directory)
    assert vet(policy(cvmfs), cvmfs / "data", "linked", tmp_path / "snapshot") == Vetted()
    copied = tmp_path / "snapshot" / "1" / "model.onnx"
    assert not copied.is_symlink()
    assert copied.read_text() == "the weights"
    # A link named as a library is a library to Triton, whatever its target is called.
    (directory / "1" / "libtriton_onnxruntime.so").symlink_to("../weights.onnx")
    decision = vet(policy(cvmfs), cvmfs / "data", "linked", tmp_path / "snapshot2")
    assert decision == Refusal(
        f"{CODE_PREFIX} (the file 1/libtriton_onnxruntime.so); such models load only from repositories "
        f"trusted for code (GLIDEIN_TRITON_CODE_REPOSITORIES: {cvmfs / 'code'})"
    )


@needs_root
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("file of another pool account", f"1/model.onnx is owned by uid {OTHER_UID}, another account"),
        ("file of the glidein's user", "1/model.onnx is owned by uid 0, the glidein's user (every job's)"),
        ("directory of another pool account", f"1 is owned by uid {OTHER_UID}, another account"),
        ("group-writable file", "1/model.onnx is writable by its group or by others (mode 664)"),
        ("other-writable directory", "1 is writable by its group or by others (mode 757)"),
        ("directory above of the pilot account", f"is owned by uid {PILOT_UID}, another account"),
        ("a fifo", "1/model.onnx is not a regular file, a directory or a link"),
    ],
)
def test_anything_another_account_can_change_is_untrusted(
    cvmfs: Path, tmp_path: Path, change: str, problem: str
) -> None:
    """Trusted are root and the owner of the prefix, never the glidein's user (root in these tests, which
    is why root's own file counts as the glidein user's here)."""
    nested = cvmfs / "data" / "vo"
    directory = model(nested, "m", ONNX)
    hand_over(nested)
    weights = directory / "1" / "model.onnx"
    if change == "file of another pool account":
        os.chown(weights, OTHER_UID, OTHER_UID)
    elif change == "file of the glidein's user":
        os.chown(weights, os.geteuid(), os.getegid())
        weights.chmod(0o444)
    elif change == "directory of another pool account":
        os.chown(directory / "1", OTHER_UID, OTHER_UID)
    elif change == "group-writable file":
        weights.chmod(0o664)
    elif change == "other-writable directory":
        (directory / "1").chmod(0o757)
    elif change == "directory above of the pilot account":
        os.chown(nested, PILOT_UID, PILOT_UID)
    else:
        weights.unlink()
        os.mkfifo(weights)  # the walk must not block on it
        os.chown(weights, 65534, 65534)
    decision = vet(policy(cvmfs), nested, "m", tmp_path / "snapshot")
    assert isinstance(decision, Refusal)
    assert problem in decision.reason
    assert not (tmp_path / "snapshot").exists()


@needs_root
def test_the_owner_of_the_prefix_and_root_are_trusted(cvmfs: Path, tmp_path: Path) -> None:
    directory = cvmfs / "data" / "onnx_model"
    os.chown(directory / "1", 0, 0)  # root, with the prefix's owner, is a trusted owner
    assert model_snapshot.trusted_owners(str(cvmfs / "data")) == frozenset({65534})  # tests run as root
    assert vet(policy(cvmfs), cvmfs / "data", "onnx_model", tmp_path / "snapshot") == Refusal(
        "1 is owned by uid 0, the glidein's user (every job's), not by root or the repository's owner"
    )
    os.chown(cvmfs / "data", OTHER_UID, OTHER_UID)
    os.chown(directory / "1", OTHER_UID, OTHER_UID)
    os.chown(directory, OTHER_UID, OTHER_UID)  # a VO's repository of its own account
    assert vet(policy(cvmfs), cvmfs / "data", "onnx_model", tmp_path / "snapshot") == Refusal(
        "1/model.onnx is owned by uid 65534, another account, not by root or the repository's owner"
    )


@needs_root
def test_the_snapshot_is_private_and_later_changes_of_the_source_do_not_reach_it(
    cvmfs: Path, tmp_path: Path
) -> None:
    snapshot = tmp_path / "snapshot"
    assert vet(policy(cvmfs), cvmfs / "data", "onnx_model", snapshot) == Vetted()
    modes = {
        str(path.relative_to(snapshot)): stat.S_IMODE(path.stat().st_mode)
        for path in [snapshot, *snapshot.rglob("*")]
    }
    assert modes == {".": 0o700, "1": 0o700, "config.pbtxt": 0o400, "1/model.onnx": 0o400}
    source = cvmfs / "data" / "onnx_model"
    (source / "config.pbtxt").write_text('backend: "python"\n')  # a new revision of the repository
    (source / "1" / "model.py").write_text("import os")
    assert (snapshot / "config.pbtxt").read_text() == ONNX
    assert not (snapshot / "1" / "model.py").exists()


@needs_root
def test_a_model_over_the_size_limit_is_refused(cvmfs: Path, tmp_path: Path) -> None:
    (cvmfs / "data" / "onnx_model" / "1" / "model.onnx").write_bytes(b"w" * 5000)
    decision = vet(policy(cvmfs, size_limit=4096), cvmfs / "data", "onnx_model", tmp_path / "snapshot")
    assert decision == Refusal(
        "the model is larger than the snapshot limit (0 MiB, GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT)"
    )
    assert not (tmp_path / "snapshot").exists()
    assert (
        vet(policy(cvmfs, size_limit=5100), cvmfs / "data", "onnx_model", tmp_path / "snapshot") == Vetted()
    )


def test_a_model_without_configuration_is_refused(cvmfs: Path, tmp_path: Path) -> None:
    (cvmfs / "data" / "onnx_model" / "config.pbtxt").unlink()
    assert vet(policy(cvmfs), cvmfs / "data", "onnx_model", tmp_path / "snapshot") == Refusal(
        "no config.pbtxt (Triton would pick the backend from the files)"
    )


@needs_root
def test_as_deployed_the_glidein_user_and_other_accounts_are_untrusted_root_is_not(tmp_path: Path) -> None:
    """The policy run by the glidein's pool account (PILOT_UID) on a repository of root's: root's files
    pass, a file of the pilot's own or of another pool account (OTHER_UID) does not."""
    repository = user_directory(0, 0o755)
    work = user_directory(PILOT_UID)
    try:
        model(repository, "m", ONNX)
        for path in [repository, *repository.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        code = (
            "import sys; from glidein_triton.worker.job_policy import Policy; "
            "p = Policy([sys.argv[1]], []); "
            "print(p.vet(*p.locate(sys.argv[1], 'm'), sys.argv[2]))"
        )
        weights = repository / "m" / "1" / "model.onnx"
        outcomes = []
        for owner in (0, PILOT_UID, OTHER_UID):
            os.chown(weights, owner, owner)
            snapshot = work / f"snapshot-{owner}"
            result = run_as(PILOT_UID, [sys.executable, "-c", code, str(repository), str(snapshot)])
            assert result.returncode == 0, result.stderr
            outcomes.append((result.stdout.strip(), snapshot.exists()))
        assert outcomes == [
            ("Vetted(code='', needs=())", True),
            (
                f"Refusal(reason=\"1/model.onnx is owned by uid {PILOT_UID}, the glidein's user (every job's), "
                "not by root or the repository's owner\")",
                False,
            ),
            (
                f'Refusal(reason="1/model.onnx is owned by uid {OTHER_UID}, another account, not by root or '
                "the repository's owner\")",
                False,
            ),
        ]
    finally:
        shutil.rmtree(repository)
        shutil.rmtree(work)

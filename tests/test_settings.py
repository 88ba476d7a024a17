"""Settings: defaults, GlideinWMS truth values, and a clear error for each invalid value."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from glidein_triton.local.glidein import helper_scripts_dir
from glidein_triton.operator import payload
from glidein_triton.worker import startup
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.images import images_dict
from glidein_triton.worker.job_request import RequestError, parse_names, parse_truth
from glidein_triton.worker.settings import (
    ALLOWED_SERVER_OPTIONS,
    MEMORY_LIMIT_AUTO_FLOOR,
    OWN_KEYS,
    RETIRED_SETTINGS,
    SETTINGS,
    Settings,
    default_value,
    memory_limit,
    parse_bool,
    parse_models,
    required_flag,
    retired_settings,
    unknown_settings,
    unknown_settings_text,
)
from glidein_triton.worker.state import ServerState
from glidein_triton.worker.word_rules import is_model_name


def test_defaults_with_the_switch_on() -> None:
    settings = Settings.from_config({"GLIDEIN_TRITON": "True"})
    assert settings.enabled
    assert not settings.required
    assert settings.runtime == "auto"
    assert settings.gpu_mode == "auto"
    assert (settings.http_port, settings.grpc_port, settings.metrics_port) == (0, 0, 0)
    assert settings.models == ("*",)
    assert settings.ready_timeout == 240
    assert settings.server_binary == "tritonserver"
    assert settings.image == ""


def test_job_repository_prefixes() -> None:
    settings = Settings.from_config(
        {
            "GLIDEIN_TRITON_JOB_REPOSITORIES": "/cvmfs/a.org/models, /cvmfs/b.org/models",
            "GLIDEIN_TRITON_CODE_REPOSITORIES": "/cvmfs/a.org/models",
        }
    )
    assert settings.job_repositories == ("/cvmfs/a.org/models", "/cvmfs/b.org/models")
    assert settings.code_repositories == ("/cvmfs/a.org/models",)
    assert Settings.from_config({}).job_repositories == ()
    assert Settings.from_config({}).job_model_size_limit == 8192
    assert Settings.from_config({"GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT": "100"}).job_model_size_limit == 100
    with pytest.raises(ConfigError, match=r"GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT='0' is not a whole number"):
        Settings.from_config({"GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT": "0"})
    for bad in ("relative/models", "/", "/cvmfs/a.org //"):
        with pytest.raises(
            ConfigError, match=r"GLIDEIN_TRITON_JOB_REPOSITORIES=.*not an absolute path prefix"
        ):
            Settings.from_config({"GLIDEIN_TRITON_JOB_REPOSITORIES": bad})


def test_pool_enrolment_settings() -> None:
    assert Settings.from_config({}).pool_identities == ("*",)
    assert Settings.from_config({}).pool_cert_hours == 2
    settings = Settings.from_config(
        {
            "GLIDEIN_TRITON_POOL_IDENTITIES": " *@fe.example.org, site@x ",
            "GLIDEIN_TRITON_POOL_CERT_HOURS": "6",
        }
    )
    assert settings.pool_identities == ("*@fe.example.org", "site@x")
    assert settings.pool_cert_hours == 6
    with pytest.raises(ConfigError, match=r"GLIDEIN_TRITON_POOL_IDENTITIES=' , ' names no pattern"):
        Settings.from_config({"GLIDEIN_TRITON_POOL_IDENTITIES": " , "})
    with pytest.raises(ConfigError, match=r"GLIDEIN_TRITON_POOL_CERT_HOURS='25' is not a whole number"):
        Settings.from_config({"GLIDEIN_TRITON_POOL_CERT_HOURS": "25"})


def test_switch_off_by_default() -> None:
    assert not Settings.from_config({}).enabled


def test_every_setting_is_documented() -> None:
    keys = {spec.key for spec in SETTINGS}
    assert keys == {
        "GLIDEIN_TRITON",
        "GLIDEIN_TRITON_REQUIRED",
        "GLIDEIN_TRITON_IMAGE",
        "GLIDEIN_TRITON_MODEL_REPOSITORY",
        "GLIDEIN_TRITON_MODELS",
        "GLIDEIN_TRITON_RUNTIME",
        "GLIDEIN_TRITON_SERVER_BINARY",
        "GLIDEIN_TRITON_GPU",
        "GLIDEIN_TRITON_ENTRY_GPUS",
        "GLIDEIN_TRITON_HTTP_PORT",
        "GLIDEIN_TRITON_GRPC_PORT",
        "GLIDEIN_TRITON_METRICS_PORT",
        "GLIDEIN_TRITON_METRICS",
        "GLIDEIN_TRITON_READY_TIMEOUT",
        "GLIDEIN_TRITON_INSTANCE_START_TIMEOUT",
        "GLIDEIN_TRITON_STOP_GRACE",
        "GLIDEIN_TRITON_PYTHON",
        "GLIDEIN_TRITON_SERVER_ARGS",
        "GLIDEIN_TRITON_SERVER_MEMORY_LIMIT",
        "GLIDEIN_TRITON_REMOTE",
        "GLIDEIN_TRITON_ADDRESS",
        "GLIDEIN_TRITON_TLS_CERT",
        "GLIDEIN_TRITON_TLS_KEY",
        "GLIDEIN_TRITON_TLS_ROOT_CERT",
        "GLIDEIN_TRITON_POOL",
        "GLIDEIN_TRITON_POOL_NAME",
        "GLIDEIN_TRITON_POOL_CONNECTION_AGE",
        "GLIDEIN_TRITON_POOL_CONNECTION_GRACE",
        "GLIDEIN_TRITON_LOAD_TIMEOUT",
        "GLIDEIN_TRITON_RESTART_LIMIT",
        "GLIDEIN_TRITON_RESTART_BACKOFF",
        "GLIDEIN_TRITON_RESTART_WINDOW",
        "GLIDEIN_TRITON_IDLE_MEMORY_GROWTH",
        "GLIDEIN_TRITON_WATCHDOG_PERIOD",
        "GLIDEIN_TRITON_JOB_REPOSITORIES",
        "GLIDEIN_TRITON_CODE_REPOSITORIES",
        "GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT",
        "GLIDEIN_TRITON_PERIODIC_PERIOD",
        "GLIDEIN_TRITON_RESERVED_CPUS",
        "GLIDEIN_TRITON_RESERVED_MEMORY",
        "GLIDEIN_TRITON_POOL_IDENTITIES",
        "GLIDEIN_TRITON_POOL_CERT_HOURS",
    }


def test_image_defaults_to_the_tritonserver_key_of_the_images_dict() -> None:
    config = {
        "GLIDEIN_TRITON": "1",
        "SINGULARITY_IMAGES_DICT": "default:/cvmfs/a/el9,tritonserver:docker://nvcr.io/nvidia/tritonserver:24.10-py3",
    }
    assert Settings.from_config(config).image == "docker://nvcr.io/nvidia/tritonserver:24.10-py3"
    config["GLIDEIN_TRITON_IMAGE"] = "/cvmfs/b/triton"
    assert Settings.from_config(config).image == "/cvmfs/b/triton"


def test_images_dict_splits_each_item_on_the_first_colon() -> None:
    assert images_dict(" a:/x , b:docker://h:5000/i:tag,broken,:nokey,c: ") == {
        "a": "/x",
        "b": "docker://h:5000/i:tag",
    }


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("GLIDEIN_TRITON", "maybe", ["GLIDEIN_TRITON", "maybe", "True/False"]),
        ("GLIDEIN_TRITON_RUNTIME", "docker", ["GLIDEIN_TRITON_RUNTIME", "docker", "apptainer", "process"]),
        ("GLIDEIN_TRITON_GPU", "tpu", ["GLIDEIN_TRITON_GPU", "auto, gpu, cpu"]),
        ("GLIDEIN_TRITON_HTTP_PORT", "80", ["GLIDEIN_TRITON_HTTP_PORT", "1024-65535"]),
        ("GLIDEIN_TRITON_GRPC_PORT", "x", ["GLIDEIN_TRITON_GRPC_PORT"]),
        ("GLIDEIN_TRITON_READY_TIMEOUT", "-5", ["GLIDEIN_TRITON_READY_TIMEOUT", "1 to 3600"]),
        ("GLIDEIN_TRITON_STOP_GRACE", "nan", ["GLIDEIN_TRITON_STOP_GRACE"]),
        ("GLIDEIN_TRITON_MODELS", "a,b/c", ["GLIDEIN_TRITON_MODELS", "'b/c'"]),
        ("GLIDEIN_TRITON_SERVER_ARGS", "--http-port=1", ["--http-port", "--log-verbose"]),
        ("GLIDEIN_TRITON_SERVER_ARGS", "--log-verbose='1", ["GLIDEIN_TRITON_SERVER_ARGS", "cannot be split"]),
    ],
)
def test_invalid_values_name_key_value_and_allowed(key: str, value: str, words: list[str]) -> None:
    config = {"GLIDEIN_TRITON": "True", key: value}
    with pytest.raises(ConfigError) as raised:
        Settings.from_config(config)
    for word in words:
        assert word in str(raised.value)


def test_values_with_spaces_and_blank_values() -> None:
    settings = Settings.from_config(
        {
            "GLIDEIN_TRITON": " yes ",
            "GLIDEIN_TRITON_MODELS": "a, b  c",
            "GLIDEIN_TRITON_SERVER_ARGS": "--log-verbose=1 '--backend-config=python,shm-default-byte-size=1048576'",
            "GLIDEIN_TRITON_RUNTIME": "   ",
            "GLIDEIN_TRITON_MODEL_REPOSITORY": "/path with spaces/repo",
        }
    )
    assert settings.enabled
    assert settings.models == ("a", "b", "c")
    assert settings.server_args == (
        "--log-verbose=1",
        "--backend-config=python,shm-default-byte-size=1048576",
    )
    assert settings.runtime == "auto"
    assert settings.model_repository == "/path with spaces/repo"


def test_server_args_allow_list_has_no_endpoint_or_security_options() -> None:
    forbidden = (
        "--http-port",
        "--grpc-address",
        "--model-repository",
        "--model-control-mode",
        "--http-restricted-api",
    )
    assert not set(forbidden) & set(ALLOWED_SERVER_OPTIONS)


def gconfig_get_bool(value: str) -> bool:
    """The truth value the GlideinWMS helper (double or real one) gives for ``value``."""
    script = f'source "{helper_scripts_dir()}/add_config_line.source"; glidein_config=/dev/stdin; gconfig_get_bool KEY'
    result = subprocess.run(["bash", "-c", script], input=f"KEY {value}\n", text=True, check=False)
    return result.returncode == 0


@pytest.mark.parametrize(
    "value",
    ["True", "true", "T", "yes", "Y", "1", "7", "007", "False", "f", "no", "N", "0", "00", "", " TRUE "],
)
def test_truth_values_agree_with_gconfig_get_bool(value: str) -> None:
    assert parse_bool("K", value) == gconfig_get_bool(value)


def test_required_flag_reads_only_its_own_key() -> None:
    assert required_flag({"GLIDEIN_TRITON_REQUIRED": "True", "GLIDEIN_TRITON_RUNTIME": "bogus"})
    assert not required_flag({})
    # An unreadable value fails safe: the operator asked for something, so failures are fatal.
    assert required_flag({"GLIDEIN_TRITON_REQUIRED": "perhaps"})


def test_the_table_fills_every_settings_field_once() -> None:
    assert sorted(spec.field for spec in SETTINGS if spec.field) == sorted(
        field.name for field in dataclasses.fields(Settings)
    )


def test_the_state_file_takes_its_defaults_from_the_table() -> None:
    state = ServerState(runtime="process")
    for field in ("stop_grace", "ready_timeout", "load_timeout", "restart_backoff"):
        assert getattr(state, field) == default_value(field)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("resnet-50_v1.2", True),
        ("..", False),
        (".", False),
        ("a/b", False),
        ("", False),
        ("x:y", False),
        ("a%2F", False),
    ],
)
def test_one_model_name_rule_for_settings_and_job_requests(name: str, allowed: bool) -> None:
    assert is_model_name(name) is allowed
    if allowed:
        assert parse_models("K", name) == (name,)
        assert parse_names("TritonModels", name) == [name]
    else:
        with pytest.raises(ConfigError):
            parse_models("K", f"good,{name}" if name else "good,a b/c")
        with pytest.raises(RequestError):
            parse_names("TritonModels", name or "a/b")


@pytest.mark.parametrize("value", ["True", "yes", "1", "2", '"true"', "False", "0", '"no"', "maybe"])
def test_job_requests_read_truth_values_as_the_settings_do(value: str) -> None:
    unquoted = value.strip('"')
    try:
        expected: bool | None = parse_bool("K", unquoted)
    except ConfigError:
        expected = None
    try:
        read: bool | None = parse_truth("TritonModelsRequired", value)
    except RequestError:
        read = None
    assert read == expected


def test_server_memory_limit_values() -> None:
    key = "GLIDEIN_TRITON_SERVER_MEMORY_LIMIT"
    assert Settings.from_config({}).server_memory_limit is None  # auto
    assert Settings.from_config({key: " AUTO "}).server_memory_limit is None
    assert Settings.from_config({key: "0"}).server_memory_limit == 0
    assert Settings.from_config({key: "640"}).server_memory_limit == 640
    for bad in ("255", "-1", "1.5G", "640MiB", "99999999999"):
        with pytest.raises(ConfigError, match=rf"{key}=.*not a memory limit: use auto, 0 .*256-"):
            Settings.from_config({key: bad})


def test_automatic_memory_limit() -> None:
    node = 24684084 // 1024
    assert memory_limit(640, gpus=True, glidein_mib=node) == 640  # the operator's value, as given
    assert memory_limit(0, gpus=False, glidein_mib=node) == 0
    assert memory_limit(None, gpus=True, glidein_mib=node) == 0  # not measured with CUDA: off
    assert memory_limit(None, gpus=False, glidein_mib=node) == node // 2
    # Several glideins on one node: each gets half of its own share, not half the node.
    assert memory_limit(None, gpus=False, glidein_mib=node // 4) == node // 4 // 2
    assert memory_limit(None, gpus=False, glidein_mib=2000) == MEMORY_LIMIT_AUTO_FLOOR
    assert memory_limit(None, gpus=False, glidein_mib=0) == 0  # unknown: none


def test_keys_meant_as_settings_are_found_with_the_closest_name() -> None:
    config = {
        "GLIDEIN_TRITON_READY_TIMOUT": "5",
        "GLIDEIN_TRITON_GPUS": "gpu",
        "GLIDEN_TRITON_MODELS": "simple",
        "GLIDEIN_TRTION": "True",
        "GLIDEIN_ToDie": "1",
        "glidein_triton_image": "/cvmfs/x",
        "GLIDEIN_TRITON_NOTHING_LIKE_IT": "1",
        # Not settings, and not misspelled ones: the plugin's own keys, what it publishes, others.
        "GLIDEIN_TRITON_READY_TIMEOUT": "5",
        "ENTRY_GLIDEIN_TRITON_DIR": "/x",
        "GLIDEIN_TRITON_CODE_DIR": "/x",
        "GLIDEIN_TRITON_ACCOUNTING_FILE": "/x",
        "TRITON_GRPC_URL": "127.0.0.1:1",
        "HAS_TRITON": "True",
        "GLIDEIN_Singularity_Use": "PREFERRED",
    }
    assert unknown_settings(config) == [
        ("GLIDEIN_TRITON_GPUS", "GLIDEIN_TRITON_GPU"),
        ("GLIDEIN_TRITON_NOTHING_LIKE_IT", ""),
        ("GLIDEIN_TRITON_READY_TIMOUT", "GLIDEIN_TRITON_READY_TIMEOUT"),
        ("GLIDEIN_TRTION", "GLIDEIN_TRITON"),
        ("GLIDEN_TRITON_MODELS", "GLIDEIN_TRITON_MODELS"),
        ("glidein_triton_image", "GLIDEIN_TRITON_IMAGE"),
    ]
    assert unknown_settings_text({"GLIDEIN_TRITON_READY_TIMOUT": "5"}) == (
        "not settings of glidein-triton, ignored: GLIDEIN_TRITON_READY_TIMOUT (did you mean "
        "GLIDEIN_TRITON_READY_TIMEOUT?) (docs/settings.md lists them)"
    )
    assert unknown_settings_text({"GLIDEIN_TRITON": "True"}) == ""


def test_a_retired_setting_is_ignored_with_why_it_is_gone() -> None:
    config = {"GLIDEIN_TRITON_TOKEN": "True", "GLIDEIN_TRITON_READY_TIMOUT": "5"}
    assert retired_settings(config) == [("GLIDEIN_TRITON_TOKEN", RETIRED_SETTINGS["GLIDEIN_TRITON_TOKEN"])]
    assert unknown_settings(config) == [("GLIDEIN_TRITON_READY_TIMOUT", "GLIDEIN_TRITON_READY_TIMEOUT")]
    assert unknown_settings_text(config) == (
        "retired setting of glidein-triton, ignored: GLIDEIN_TRITON_TOKEN (the access tokens are gone: jobs "
        "reach the server through the front door, which admits only the glidein's user, and no secret is on "
        "the server's command line any more); not settings of glidein-triton, ignored: "
        "GLIDEIN_TRITON_READY_TIMOUT (did you mean GLIDEIN_TRITON_READY_TIMEOUT?) (docs/settings.md lists them)"
    )
    # Not a failure: the settings are read as if it were not there.
    assert Settings.from_config({"GLIDEIN_TRITON_TOKEN": "False"}) == Settings.from_config({})


def test_remote_mode_requires_mutual_tls_naming_what_is_missing() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_config({"GLIDEIN_TRITON_REMOTE": "True"})
    assert str(raised.value) == (
        "GLIDEIN_TRITON_REMOTE=True requires mutual TLS: set GLIDEIN_TRITON_TLS_CERT and GLIDEIN_TRITON_TLS_KEY "
        "and GLIDEIN_TRITON_TLS_ROOT_CERT"
    )
    server_only = {
        "GLIDEIN_TRITON_REMOTE": "True",
        "GLIDEIN_TRITON_TLS_CERT": "/c",
        "GLIDEIN_TRITON_TLS_KEY": "/k",
    }
    with pytest.raises(ConfigError, match=r"requires mutual TLS: set GLIDEIN_TRITON_TLS_ROOT_CERT$"):
        Settings.from_config(server_only)
    mutual = Settings.from_config({**server_only, "GLIDEIN_TRITON_TLS_ROOT_CERT": "/ca"})
    assert (mutual.remote, mutual.tls_root_cert) == (True, "/ca")


def test_the_plugins_own_keys_are_the_ones_it_writes() -> None:
    assert {payload.CODE_DIR_ATTRIBUTE, startup.ACCOUNTING_KEY} <= set(OWN_KEYS)
    script = (payload.SCRIPTS_DIR / payload.SETUP_SCRIPT).read_text()
    assert "gconfig_add GLIDEIN_TRITON_CODE_DIR " in script


def test_a_pool_server_is_in_remote_mode_with_its_own_tls_unless_the_operator_gives_it() -> None:
    pool = Settings.from_config({"GLIDEIN_TRITON_POOL": "Server"})
    assert (pool.pool, pool.pool_name, pool.remote, pool.tls_cert) == ("server", "default", True, "")
    assert (pool.pool_connection_age, pool.pool_connection_grace) == (600.0, 30.0)
    assert Settings.from_config({}).pool == "off"
    with pytest.raises(ConfigError, match=r"requires mutual TLS: set GLIDEIN_TRITON_TLS_ROOT_CERT$"):
        Settings.from_config(
            {"GLIDEIN_TRITON_POOL": "server", "GLIDEIN_TRITON_TLS_CERT": "/c", "GLIDEIN_TRITON_TLS_KEY": "/k"}
        )
    client = Settings.from_config({"GLIDEIN_TRITON_POOL": "client", "GLIDEIN_TRITON_POOL_NAME": "cms-gpu.1"})
    assert (client.pool, client.pool_name, client.remote) == ("client", "cms-gpu.1", False)


@pytest.mark.parametrize("name", ["", "a b", 'x"y', "a" * 65, "é"])
def test_a_pool_name_is_a_plain_word(name: str) -> None:
    config = {"GLIDEIN_TRITON_POOL_NAME": name} if name else {"GLIDEIN_TRITON_POOL_NAME": "\t"}
    if not name:
        assert Settings.from_config(config).pool_name == "default"  # blank: the default
        return
    with pytest.raises(ConfigError, match=r"GLIDEIN_TRITON_POOL_NAME=.* is not a pool name"):
        Settings.from_config(config)

"""Exceptions of the worker side, each mapped onto a GlideinWMS error_gen failure type."""

from __future__ import annotations


class TritonSetupError(Exception):
    """A failure that the startup script reports through error_gen.

    ``failure_type`` is one of error_gen's types (``WN_Resource``, ``Network``, ``Config``,
    ``VO_Config``, ``Corruption``, ``VO_Proxy``).
    """

    failure_type = "WN_Resource"

    def __init__(self, message: str, *, evidence: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.evidence = evidence

    def detail(self) -> str:
        """The message followed by its evidence (argv, exit code, log tail), as error_gen's detail."""
        if not self.evidence:
            return self.message
        return f"{self.message}\n{self.evidence}"


class ConfigError(TritonSetupError):
    """A glidein_config setting has an invalid value (set by the factory or frontend operator)."""

    failure_type = "Config"


class VOConfigError(TritonSetupError):
    """What the VO provides is unusable: the server image or the model repository."""

    failure_type = "VO_Config"


class RuntimeNotFoundError(TritonSetupError):
    """No container runtime or tritonserver binary on this node."""

    failure_type = "WN_Resource"


class ServerStartError(TritonSetupError):
    """The server process or container instance could not be started, or exited early."""

    failure_type = "WN_Resource"


class ModelLoadError(ServerStartError):
    """The server exited because a model it was to start with is not in its repositories or cannot load."""

    failure_type = "VO_Config"


class OptionRefusedError(ServerStartError):
    """The server exited at once because its release does not know one of the options it was given."""

    def __init__(self, message: str, *, option: str, evidence: str = "") -> None:
        super().__init__(message, evidence=evidence)
        self.option = option


class PortInUseError(ServerStartError):
    """The server exited because one of its ports was taken between the probe and the bind."""

    failure_type = "Network"


class ReadinessTimeoutError(ServerStartError):
    """The server was still not ready when the readiness timeout ran out."""

    failure_type = "WN_Resource"


class WorkDirectoryError(TritonSetupError):
    """The plugin cannot write its files in the glidein's work directory (read-only, full, over quota)."""

    failure_type = "WN_Resource"


class CorruptionError(TritonSetupError):
    """Files of the plugin itself are missing or damaged."""

    failure_type = "Corruption"

"""A glidein work directory laid out as glidein_startup.sh lays it out, to run the plugin for real.

GlideinWMS is not installable here, so this stands in for the parts of it around a custom script:
the work directory and glidein_config keys, downloading (copying) and untarring the plugin's files,
running the startup script as ``<script> glidein_config <id>`` with stdin from /dev/null, reading the
published attributes the way condor_startup.sh does, what condor_startup.sh does to the work directory
before the startd starts (:meth:`SimulatedGlidein.start_condor`), and running ``.gwms.d/exec/cleanup`` the way
``gwms_process_scripts`` does. The helper scripts (add_config_line.source, error_gen.sh) are the doubles in
glidein_doubles/, or the real ones from ``$GLIDEINWMS_WEB_BASE`` (a GlideinWMS creation/web_base directory).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from glidein_triton.operator import payload
from glidein_triton.worker.glidein_config import parse_glidein_config

DOUBLES_DIR = Path(__file__).resolve().parent / "glidein_doubles"
CONDOR_VAR_FILE_KEYS = (
    "GLIDECLIENT_GROUP_CONDOR_VARS_FILE",
    "GLIDECLIENT_CONDOR_VARS_FILE",
    "ENTRY_CONDOR_VARS_FILE",
    "CONDOR_VARS_FILE",
)


def helper_scripts_dir() -> Path:
    """The real GlideinWMS helpers when GLIDEINWMS_WEB_BASE is set, else the doubles."""
    real = os.environ.get("GLIDEINWMS_WEB_BASE")
    return Path(real) if real else DOUBLES_DIR


#: ScriptResult.status when error_gen left an otrb_output.xml that is not XML (it could not write it all).
UNREADABLE_REPORT = "UNREADABLE"


@dataclass
class ScriptResult:
    """A script's exit code and output, and what it reported through error_gen (otrb_output.xml)."""

    returncode: int
    stdout: str
    stderr: str
    status: str = ""
    metrics: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def failure(self) -> str:
        return self.metrics.get("failure", "")


def read_report(path: Path) -> tuple[str, dict[str, str], str]:
    """(status, metrics, detail) of an otrb_output.xml written by error_gen."""
    root = ET.fromstring(path.read_text())  # noqa: S314 (a file our own test run wrote)
    status = root.findtext("result/status", "")
    metrics = {metric.get("name", ""): metric.text or "" for metric in root.iter("metric")}
    return status, metrics, (root.findtext("detail") or "").strip()


class GlideinDied(RuntimeError):
    """The real glidein would have ended here (a GlideinWMS script failed it), with this message."""


class SimulatedGlidein:
    """One glidein's work directory under ``root``, with a main and an entry directory."""

    def __init__(self, root: Path, entry: str = "TEST_ENTRY") -> None:
        self.root = root.resolve()
        self.entry = entry
        self.main_dir = self.root / "main"
        self.entry_dir = self.root / f"entry_{entry}"
        self.config_path = self.root / "glidein_config"
        self.gwms_dir = self.root / ".gwms.d"

    def layout(self, extra: Mapping[str, str] | None = None) -> SimulatedGlidein:
        """Create the directories, helper scripts and the initial glidein_config."""
        for directory in (self.main_dir, self.entry_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for phase in ("setup", "prejob", "postjob", "cleanup", "setup_singularity"):
            (self.gwms_dir / "exec" / phase).mkdir(parents=True, exist_ok=True)
        helpers = helper_scripts_dir()
        shutil.copyfile(helpers / "add_config_line.source", self.root / "add_config_line.source")
        shutil.copyfile(helpers / "error_gen.sh", self.main_dir / "error_gen.sh")
        (self.main_dir / "error_gen.sh").chmod(0o755)
        (self.main_dir / "condor_vars.lst").write_text("")
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        lines = {
            "GLIDEIN_Name": "glidein-triton-sim",
            "GLIDEIN_Entry_Name": self.entry,
            "GLIDEIN_Site": "LOCAL_SIM",
            "GLIDEIN_STARTUP_PID": str(os.getpid()),
            "GLIDEIN_WORK_DIR": str(self.main_dir),
            "GLIDEIN_ENTRY_WORK_DIR": str(self.entry_dir),
            "TMP_DIR": str(tmp_dir),
            "GLIDEIN_LOCAL_TMP_DIR": str(tmp_dir),
            "ADD_CONFIG_LINE_SOURCE": str(self.root / "add_config_line.source"),
            "ERROR_GEN_PATH": str(self.main_dir / "error_gen.sh"),
            "CONDOR_VARS_FILE": str(self.main_dir / "condor_vars.lst"),
            "GLIDEIN_CPUS": "2",
        }
        lines.update(extra or {})
        text = "".join(f"{key} {value}\n" for key, value in lines.items()) + "# --- User Parameters ---\n"
        self.config_path.write_text(text)
        return self

    def set(self, key: str, value: str) -> None:
        """Append a key, as a factory/frontend ``<attr parameter="True">`` or an earlier script would."""
        with self.config_path.open("a") as config:
            config.write(f"{key} {value}\n")

    def install_payload(self) -> None:
        """Download the plugin's files as the factory XML templates list them.

        The worker tarball is an entry file, untarred into ``entry_<name>/triton_code`` (GlideinWMS writes
        ``ENTRY_GLIDEIN_TRITON_DIR``); the startup script is a global file placed after the entry files
        (``after_entry="True"``), so it is saved in ``main/`` and runs with id ``main``.
        """
        setup = self.startup_script
        shutil.copyfile(payload.SCRIPTS_DIR / payload.SETUP_SCRIPT, setup)
        setup.chmod(0o755)
        untar_dir = self.entry_dir / payload.UNTAR_DIR
        untar_dir.mkdir(exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(payload.worker_tarball_bytes()), mode="r:gz") as tar:
            tar.extractall(untar_dir, filter="data")
        self.set(f"ENTRY_{payload.CODE_DIR_ATTRIBUTE}", str(untar_dir))

    @property
    def startup_script(self) -> Path:
        return self.main_dir / payload.SETUP_SCRIPT

    def config(self) -> dict[str, str]:
        return parse_glidein_config(self.config_path.read_bytes().decode("utf-8", errors="surrogateescape"))

    def _run(self, argv: list[str], cwd: Path, env: Mapping[str, str] | None, timeout: float) -> ScriptResult:
        report = self.root / "otrb_output.xml"
        if report.exists():  # not unlink(missing_ok=True): a read-only work directory refuses that too
            report.unlink()
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        outcome = ScriptResult(result.returncode, result.stdout, result.stderr)
        if report.exists():
            try:
                outcome.status, outcome.metrics, outcome.detail = read_report(report)
            except ET.ParseError:
                # error_gen could not finish the file (e.g. the disk is full): no report.
                outcome.status = UNREADABLE_REPORT
        return outcome

    def run_startup(
        self, env: Mapping[str, str] | None = None, timeout: float = 600, condor: bool = True
    ) -> ScriptResult:
        """Run the startup script as glidein_startup.sh does: ``<script> glidein_config main``.

        A script that exits 0 is followed by what condor_startup.sh does to the work directory
        (:meth:`start_condor`), unless ``condor`` is False: a fault there raises :class:`GlideinDied`.
        """
        result = self._run([str(self.startup_script), "glidein_config", "main"], self.root, env, timeout)
        if condor and result.returncode == 0:
            self.start_condor()
        return result

    def start_condor(self) -> None:
        """condor_startup.sh's first step in the work directory, before the startd starts.

        It keeps ``log`` and ``execute`` when both are directories, else runs ``mkdir log execute``, which
        fails when either one exists: error_gen ``WN_Resource`` "Error creating monitor dirs", exit 1.
        HTCondor then writes its logs to ``log`` and job sandboxes go to ``execute/dir_<pid>``.
        """
        log_dir, execute_dir = self.root / "log", self.root / "execute"
        if log_dir.is_dir() and execute_dir.is_dir():
            return
        try:
            for directory in (log_dir, execute_dir):
                directory.mkdir()
        except OSError as error:
            raise GlideinDied(f"condor_startup.sh: Error creating monitor dirs ({error})") from error

    def run_cleanup(self, env: Mapping[str, str] | None = None, timeout: float = 120) -> list[ScriptResult]:
        """Run every executable of .gwms.d/exec/cleanup as gwms_process_scripts does."""
        directory = self.gwms_dir / "exec" / "cleanup"
        results = []
        for script in sorted(directory.iterdir()):
            if os.access(script, os.X_OK) and not script.name.endswith(".ignore"):
                results.append(
                    self._run([f"./{script.name}", str(self.config_path)], directory, env, timeout)
                )
        return results

    def condor_vars(self) -> list[list[str]]:
        """The condor_vars.lst lines of every file owner, as condor_startup.sh reads them."""
        config = self.config()
        lines = []
        for key in CONDOR_VAR_FILE_KEYS:
            path = config.get(key)
            if path and Path(path).is_file():
                lines += [
                    line.split() for line in Path(path).read_text().splitlines() if line and line[0] != "#"
                ]
        return lines

    def published(self) -> tuple[dict[str, str], dict[str, str]]:
        """(machine ad attributes as ClassAd expressions, job environment), by condor_startup.sh's rules."""
        config = self.config()
        attributes: dict[str, str] = {}
        environment: dict[str, str] = {}
        for fields in self.condor_vars():
            if len(fields) != 7:
                raise ValueError(f"condor_vars.lst line has {len(fields)} fields, not 7: {fields}")
            name, kind, default, condor_name, _required, publish, job_env = fields
            value = config.get(name, "")
            if not value:
                if default == "-":
                    continue
                value = default
            condor_name = name if condor_name == "+" else condor_name
            if publish == "Y":
                attributes[condor_name] = f'"{value}"' if kind == "S" else value
            if job_env != "-":
                environment[{"+": name, "@": condor_name}.get(job_env, job_env)] = value
        return attributes, environment


def classad_text(attributes: Mapping[str, str]) -> str:
    """The attributes as an old-syntax ClassAd (``Name = expression`` lines)."""
    return "".join(f"{name} = {expression}\n" for name, expression in attributes.items())

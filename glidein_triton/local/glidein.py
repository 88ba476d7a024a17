"""A glidein work directory laid out as glidein_startup.sh lays it out, to run the plugin for real.

GlideinWMS is not installable here, so this stands in for the parts of it around a custom script:
the work directory and glidein_config keys, downloading (copying) and untarring the plugin's files,
running the startup script, then the periodic script's first run, as ``<script> glidein_config <id>`` with
stdin from /dev/null, checking their error_gen reports as error_augment.sh does, scheduling the periodic
script only when its first run exits 0 (``add_periodic_script``: the startd cron include), running it from
the cron as script_wrapper.sh does (:meth:`SimulatedGlidein.run_cron`), reading the published attributes
the way condor_startup.sh does, what condor_startup.sh does to the work directory before the startd starts
(:meth:`SimulatedGlidein.start_condor`), and the glidein's exit (:meth:`SimulatedGlidein.exit`):
``.gwms.d/exec/cleanup`` run the way ``gwms_process_scripts`` does (with cvmfsexec's ``cvmfs_umount.sh``
among them when :meth:`SimulatedGlidein.mount_cvmfs` was used), then the work directory removed unless
``GLIDEIN_DEBUG_OPTIONS`` has ``nocleanup``. The helper scripts (add_config_line.source, error_gen.sh) are
the doubles in glidein_doubles/, or the real ones from ``$GLIDEINWMS_WEB_BASE`` (a GlideinWMS
creation/web_base directory).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from glidein_triton.operator import factory_patch, payload
from glidein_triton.worker import cvmfs, glidein_paths
from glidein_triton.worker.glidein_config import parse_glidein_config

if TYPE_CHECKING:
    from glidein_triton.worker.glidein_paths import Phase

DOUBLES_DIR = Path(__file__).resolve().parent / "glidein_doubles"
CONDOR_VAR_FILE_KEYS = (
    "GLIDECLIENT_GROUP_CONDOR_VARS_FILE",
    "GLIDECLIENT_CONDOR_VARS_FILE",
    "ENTRY_CONDOR_VARS_FILE",
    "CONDOR_VARS_FILE",
)
#: glidein_startup.sh's add_periodic_script: the startd cron part of condor_config, and its job names.
CRON_INCLUDE = "condor_config_startd_cron_include"
CRON_NAME_PREFIX = "GLIDEIN_PS_"
NO_PREFIX = "NOPREFIX"
#: glidein_startup.sh's add_periodic_script: ``STARTD_CRON_<name>_SLOTS`` and ``_JOB_LOAD`` of every job
CRON_SLOTS = (1,)
CRON_JOB_LOAD = "0.01"
#: cvmfsexec's unmount script: glidein_startup.sh copies it into .gwms.d/exec/cleanup under this name.
CVMFS_UMOUNT = "cvmfs_umount.sh"
#: A stand-in for cvmfs_umount.sh: the simulated /cvmfs is gone once it ran (cvmfsexec unmounts it).
CVMFS_UMOUNT_STANDIN = """#!/bin/bash
# STAND-IN for cvmfsexec's cvmfs_umount.sh: the simulated /cvmfs mount point disappears.
mv "{mount}" "{mount}.unmounted"
"""


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

    @property
    def reported(self) -> bool:
        """Whether error_augment.sh accepts the report: one was written, and its status agrees with the exit
        code (else GlideinWMS records "The test script did not produce an XML file")."""
        return self.status == ("OK" if self.returncode == 0 else "ERROR")


@dataclass(frozen=True)
class PeriodicScript:
    """A ``<file period=...>`` of the glidein: its path, owner id, period and attribute prefix."""

    path: Path
    owner: str
    period: int
    prefix: str


@dataclass
class CronRun:
    """One startd cron run of a periodic script through script_wrapper.sh."""

    returncode: int
    stdout: str
    stderr: str
    #: the script's own ``Name = value`` lines, as machine ad attributes (with the prefix)
    attributes: dict[str, str]
    #: script_wrapper.sh's own lines (OK, LAST, LAST_END...), as machine ad attributes
    wrapper: dict[str, str]


def cron_lines(text: str) -> dict[str, str]:
    """``Name = value`` lines (startd cron output) as a dict of ClassAd expressions."""
    values = {}
    for line in text.splitlines():
        name, separator, value = line.partition(" = ")
        if separator:
            values[name.strip()] = value.strip()
    return values


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
        self.gwms_dir = glidein_paths.gwms_dir(self.root)
        #: the periodic script downloaded with the payload, and those scheduled after their first run
        self.periodic: PeriodicScript | None = None
        self.scheduled: list[PeriodicScript] = []
        self.first_periodic_run: ScriptResult | None = None
        self.cvmfs: Path | None = None
        #: HTCondor's STARTER_NESTED_SCRATCH (true by default since 25.4.0): job sandboxes as
        #: ``execute/dir_<pid>/scratch`` beside ``htcondor`` and ``user``; false: ``execute/dir_<pid>``
        self.nested_scratch = True

    def layout(self, extra: Mapping[str, str] | None = None) -> SimulatedGlidein:
        """Create the directories, helper scripts and the initial glidein_config."""
        for directory in (self.main_dir, self.entry_dir):
            directory.mkdir(parents=True, exist_ok=True)
        phases: tuple[Phase, ...] = ("setup", "prejob", "postjob", "cleanup", "setup_singularity")
        for phase in phases:
            glidein_paths.phase_dir(self.root, phase).mkdir(parents=True, exist_ok=True)
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
            "SLOTS_LAYOUT": "partitionable",  # glidein_startup.sh's argument (the factory's default)
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
        ``ENTRY_GLIDEIN_TRITON_DIR``); the startup and periodic scripts are global files placed after the
        entry files (``after_entry="True"``), so they are saved in ``main/`` and run with id ``main``.
        """
        setup = self.startup_script
        shutil.copyfile(payload.SCRIPTS_DIR / payload.SETUP_SCRIPT, setup)
        setup.chmod(0o755)
        untar_dir = self.entry_dir / payload.UNTAR_DIR
        untar_dir.mkdir(exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(payload.worker_tarball_bytes()), mode="r:gz") as tar:
            # The "data" filter (no links out, no devices) where this Python has it (3.11.4, 3.12 and later).
            if hasattr(tarfile, "data_filter"):
                tar.extractall(untar_dir, filter="data")
            else:
                tar.extractall(untar_dir)  # noqa: S202 (our own tarball, just built)
        self.set(f"ENTRY_{payload.CODE_DIR_ATTRIBUTE}", str(untar_dir))
        self.install_periodic()

    def install_periodic(
        self,
        period: int = factory_patch.DEFAULT_PERIOD,
        prefix: str = factory_patch.DEFAULT_PERIODIC_PREFIX,
    ) -> PeriodicScript:
        """Download the periodic script (``period=``, ``prefix=`` as the factory template writes them)."""
        path = self.main_dir / payload.PERIODIC_SCRIPT
        shutil.copyfile(payload.SCRIPTS_DIR / payload.PERIODIC_SCRIPT, path)
        path.chmod(0o755)
        self.periodic = PeriodicScript(path, "main", period, prefix)
        return self.periodic

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

    def run_script(
        self, script: Path, owner: str, env: Mapping[str, str] | None = None, timeout: float = 600
    ) -> ScriptResult:
        """A custom script as glidein_startup.sh runs it: ``<script> glidein_config <id>`` in the work dir."""
        return self._run([str(script), "glidein_config", owner], self.root, env, timeout)

    def run_startup(
        self, env: Mapping[str, str] | None = None, timeout: float = 600, condor: bool = True
    ) -> ScriptResult:
        """Run the startup script as glidein_startup.sh does: ``<script> glidein_config main``.

        A script that exits 0 is followed by the rest of the glidein's start, unless ``condor`` is False:
        the periodic script's first run (:meth:`run_first_periodic`), then what condor_startup.sh does to
        the work directory (:meth:`start_condor`). A fault there raises :class:`GlideinDied`.
        """
        result = self.run_script(self.startup_script, "main", env, timeout)
        if condor and result.returncode == 0:
            self.run_first_periodic(env, timeout)
            self.start_condor()
        return result

    def run_first_periodic(self, env: Mapping[str, str] | None = None, timeout: float = 600) -> None:
        """The periodic script's startup-time run, like any custom script; scheduled only if it exits 0.

        A non-zero exit fails the glidein (:class:`GlideinDied`); a missing or mismatched error_gen report
        does not (GlideinWMS then records a generic one): see :attr:`first_periodic_run`.
        """
        if self.periodic is None:
            return
        result = self.run_script(self.periodic.path, self.periodic.owner, env, timeout)
        self.first_periodic_run = result
        if result.returncode != 0:
            message = f"Error running '{self.periodic.path}' (exit code {result.returncode})"
            raise GlideinDied(f"glidein_startup.sh: {message}")
        if self.periodic.period > 0:
            self.add_periodic_script(self.periodic)

    def add_periodic_script(self, script: PeriodicScript) -> None:
        """glidein_startup.sh's add_periodic_script: a STARTD_CRON job in the cron include file."""
        self.scheduled.append(script)
        name = f"{CRON_NAME_PREFIX}{len(self.scheduled)}"
        lines = [
            f"STARTD_CRON_JOBLIST = $(STARTD_CRON_JOBLIST) {name}",
            f"STARTD_CRON_{name}_MODE = Periodic",
            f"STARTD_CRON_{name}_KILL = True",
            f"STARTD_CRON_{name}_PERIOD = {script.period}s",
            f"STARTD_CRON_{name}_EXECUTABLE = {self.main_dir / 'script_wrapper.sh'}",
            f"STARTD_CRON_{name}_ARGS = glidein_config {script.owner} {name} {script.path} {script.prefix}",
            f"STARTD_CRON_{name}_CWD = {self.root}",
            f"STARTD_CRON_{name}_SLOTS = {' '.join(map(str, CRON_SLOTS))}",
            f"STARTD_CRON_{name}_JOB_LOAD = {CRON_JOB_LOAD}",
        ]
        if script.prefix != NO_PREFIX:
            lines.append(f"STARTD_CRON_{name}_PREFIX = {script.prefix}")
        with (self.root / CRON_INCLUDE).open("a") as include:
            include.write("".join(f"{line}\n" for line in lines))
        self.set("GLIDEIN_condor_config_startd_cron_include", CRON_INCLUDE)

    def run_cron(self, env: Mapping[str, str] | None = None) -> list[CronRun]:
        """One round of the startd cron: each scheduled script through :meth:`run_cron_job`."""
        return [self.run_cron_job(script, env) for script in self.scheduled]

    def run_cron_job(
        self, script: PeriodicScript, env: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> CronRun:
        """script_wrapper.sh run by the startd cron: a fresh temporary directory in the work dir as cwd, the
        absolute glidein_config path, ``GLIDEIN_PERIODIC_SCRIPT=true``; killed when the period is over
        (``STARTD_CRON_<name>_KILL``). The script's ``Name = value`` lines get the prefix (none for
        NOPREFIX), and the wrapper adds OK, LAST and LAST_END."""
        run_env = dict(os.environ if env is None else env)
        run_env["GLIDEIN_PERIODIC_SCRIPT"] = "true"
        cwd = Path(tempfile.mkdtemp(dir=self.root))
        try:
            result = subprocess.run(
                [str(script.path), str(self.config_path), script.owner],
                cwd=cwd,
                env=run_env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=script.period if timeout is None else timeout,
                check=False,
            )
        finally:
            shutil.rmtree(cwd, ignore_errors=True)
        prefix = "" if script.prefix == NO_PREFIX else script.prefix
        ad_prefix = CRON_NAME_PREFIX if script.prefix == NO_PREFIX else prefix
        attributes = {f"{prefix}{name}": value for name, value in cron_lines(result.stdout).items()}
        wrapper = {
            f"{ad_prefix}OK": str(result.returncode == 0),
            f"{ad_prefix}LAST": f'"{script.path}"',
        }
        return CronRun(result.returncode, result.stdout, result.stderr, attributes, wrapper)

    def slot_ads(self, runs: Sequence[CronRun]) -> list[dict[str, str]]:
        """The startd's slot ads, evaluated: condor_startup.sh's slots (one partitionable slot for
        ``SLOTS_LAYOUT`` "partitionable", else ``GLIDEIN_CPUS`` fixed slots), each with the published
        attributes and its ``SlotID``; the cron ``runs``' output is merged only into the slots of
        :data:`CRON_SLOTS` (the startd's ``InSlotList``), after the published values."""
        config = self.config()
        count = 1 if config.get("SLOTS_LAYOUT") == "partitionable" else int(config.get("GLIDEIN_CPUS", "1"))
        ads = []
        for slot in range(1, count + 1):
            ad = {**self.published()[0], "SlotID": str(slot)}
            for run in runs if slot in CRON_SLOTS else []:
                ad.update(run.attributes)
                ad.update(run.wrapper)
            ads.append({name: evaluate(value, ad) for name, value in ad.items()})
        return ads

    def start_condor(self) -> None:
        """condor_startup.sh's first step in the work directory, before the startd starts.

        It keeps ``log`` and ``execute`` when both are directories, else runs ``mkdir log execute``, which
        fails when either one exists: error_gen ``WN_Resource`` "Error creating monitor dirs", exit 1.
        HTCondor then writes its logs to ``log`` and job sandboxes go to ``execute/dir_<pid>``.
        """
        log_dir, execute_dir = self.root / "log", glidein_paths.execute_dir(self.root)
        if log_dir.is_dir() and execute_dir.is_dir():
            return
        try:
            for directory in (log_dir, execute_dir):
                directory.mkdir()
        except OSError as error:
            raise GlideinDied(f"condor_startup.sh: Error creating monitor dirs ({error})") from error

    def setup_resources(self, node_cpus: int = 2) -> None:
        """glidein_memory_setup.sh and glidein_cpus_setup.sh, which GlideinWMS runs after the after_entry
        user scripts (the plugin's among them): each writes its key to glidein_config and a condor_vars line
        after the plugin's. ``MEMORY`` is ``GLIDEIN_MaxMemMBs`` when set (else the startd detects it);
        ``GLIDEIN_CPUS`` stays a number, ``auto``/``slot`` without a batch-system count and ``node``
        become ``node_cpus``, unset becomes 1 (the overload factors are not modelled)."""
        config = self.config()
        lines = []
        memory = config.get("GLIDEIN_MaxMemMBs", "")
        if memory:
            self.set("MEMORY", memory)
            lines.append("MEMORY C - + N N -")
        cpus = config.get("GLIDEIN_CPUS", "").strip().lower() or "1"
        self.set("GLIDEIN_CPUS", str(node_cpus) if cpus in ("auto", "node", "slot", "0", "-1") else cpus)
        lines.append("GLIDEIN_CPUS C - + N N -")
        with (self.main_dir / "condor_vars.lst").open("a") as condor_vars:
            condor_vars.write("".join(f"{line}\n" for line in lines))

    def condor_config(self, layout: str = "partitionable") -> str:
        """The resource part of the condor_config condor_startup.sh writes: ``NAME=value`` for each
        condor_vars.lst line with a value (set_var, in the vars files' order), then the slot lines for
        ``SLOTS_LAYOUT`` (partitionable, else fixed), as its code for them writes them."""
        config = self.config()
        lines = []
        for name, kind, default, condor_name, _required, _publish, _job_env in self.condor_vars():
            value = config.get(name, "") or ("" if default == "-" else default)
            if value:
                quoted = f'"{value}"' if kind == "S" else value
                lines.append(f"{name if condor_name == '+' else condor_name}={quoted}")
        lines.append("NUM_CPUS = $(GLIDEIN_CPUS)")
        if layout == "partitionable":
            lines += [
                "NUM_SLOTS = 1",
                "SLOT_TYPE_1 = cpus=$(GLIDEIN_CPUS)",
                "NUM_SLOTS_TYPE_1 = 1",
                "SLOT_TYPE_1_PARTITIONABLE = True",
            ]
        else:
            lines += ["SLOT_TYPE_1 = cpus=1", "NUM_SLOTS_TYPE_1 = $(GLIDEIN_CPUS)"]
        return "".join(f"{line}\n" for line in lines)

    def mount_cvmfs(self, mount: Path) -> Path:
        """A simulated /cvmfs at ``mount`` mounted by cvmfsexec: cvmfs_setup.sh writes ``CVMFS_MOUNT_DIR``
        (the mount is not /cvmfs), and glidein_startup.sh copies its ``cvmfs_umount.sh`` into
        .gwms.d/exec/cleanup, where it runs among the cleanup scripts."""
        mount.mkdir(parents=True, exist_ok=True)
        self.set(cvmfs.MOUNT_DIR_KEY, str(mount))
        umount = glidein_paths.phase_dir(self.root, "cleanup") / CVMFS_UMOUNT
        umount.write_text(CVMFS_UMOUNT_STANDIN.format(mount=mount))
        umount.chmod(0o755)
        self.cvmfs = mount
        return mount

    def run_cleanup(self, env: Mapping[str, str] | None = None, timeout: float = 120) -> list[ScriptResult]:
        """Run every executable of .gwms.d/exec/cleanup as gwms_process_scripts does (in the C locale's
        order, which agrees with other locales for the names used here)."""
        directory = glidein_paths.phase_dir(self.root, "cleanup")
        results = []
        for script in sorted(directory.iterdir()):
            if os.access(script, os.X_OK) and not script.name.endswith(".ignore"):
                results.append(
                    self._run([f"./{script.name}", str(self.config_path)], directory, env, timeout)
                )
        return results

    def exit(self, env: Mapping[str, str] | None = None, timeout: float = 120) -> list[ScriptResult]:
        """glidein_startup.sh's glidein_exit: the cleanup scripts, then the work directory is removed, unless
        ``GLIDEIN_DEBUG_OPTIONS`` (an environment variable, a comma list) has ``nocleanup``: the cleanup
        scripts still run, only the work directory is kept."""
        results = self.run_cleanup(env, timeout)
        options = (os.environ if env is None else env).get("GLIDEIN_DEBUG_OPTIONS", "")
        if "nocleanup" not in options.split(","):
            subprocess.run(["chmod", "-R", "u+w", str(self.root)], check=False, capture_output=True)
            shutil.rmtree(self.root)
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


def evaluate(expression: str, ad: Mapping[str, str]) -> str:
    """The value of a published expression in ``ad``: literals as they are, and ``(Name=?=literal)``
    (the only kind of expression the plugin publishes) as True or False."""
    match = re.fullmatch(r"\((\w+)=\?=(\w+)\)", expression)
    return str(ad.get(match.group(1)) == match.group(2)) if match else expression


def classad_text(attributes: Mapping[str, str]) -> str:
    """The attributes as an old-syntax ClassAd (``Name = expression`` lines)."""
    return "".join(f"{name} = {expression}\n" for name, expression in attributes.items())

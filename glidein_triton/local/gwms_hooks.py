"""How GlideinWMS runs the plugin's hooks, for a :class:`SimulatedGlidein`: jobs and the startd cron.

* :func:`start_job` stands in for HTCondor's starter and a job wrapper: it makes a job sandbox as the
  starter does (starter.cpp): ``<work dir>/execute/dir_<pid>`` with, by default (``STARTER_NESTED_SCRATCH``,
  true since HTCondor 25.4.0, :attr:`SimulatedGlidein.nested_scratch`), the peers ``htcondor`` (0755),
  ``user`` (0700) and ``scratch``, the job's working directory and ``_CONDOR_SCRATCH_DIR``; in the flat
  layout ``dir_<pid>`` itself is. The job ad ``.job.ad`` and the machine ad ``.machine.ad`` go into the
  working directory in both layouts, the job ad last. It runs the job under one of three wrappers:

  - ``default``: GlideinWMS's default_singularity_wrapper.sh, which processes ``.gwms.d/exec/prejob`` as
    ``gwms_process_scripts`` does (executables run as ``./<file> <glidein_config>``, other ``*.sh`` files
    sourced, lexicographic order, ``*.ignore`` skipped), then ``exec``s the job. With ``container`` it does
    what ``singularity_prepare_and_invoke`` prepares (without a container): ``.gwms.d`` copied into the
    sandbox and processed from there, ``GWMS_SINGULARITY_REEXEC=1``, the sandbox seen under another path
    (``srv``, standing for /srv, with ``GWMS_SINGULARITY_OUTSIDE_PWD``), the glidein directory either not
    visible at all or seen under another root;
  - ``exec``: a wrapper that only execs the job (as the OSPool's), with the startd's job environment;
  - ``container``: HTCondor's own container support, where no pre-job runs and the job sees only its
    sandbox. **Stand-in for a container**: a private mount namespace (``unshare --mount``, needs root or
    user namespaces) binds the sandbox at a mount point outside the glidein, hides the glidein directory
    under an empty tmpfs, and runs the job there with an environment cleared but for
    ``_CONDOR_SCRATCH_DIR``, ``_CONDOR_JOB_AD``, ``_CONDOR_MACHINE_AD`` (and the image's ``PATH``).
* :func:`run_periodic` runs the glidein's periodic script from the simulated startd cron
  (:meth:`SimulatedGlidein.run_cron_job`, script_wrapper.sh's way), or, with ``first=True``, as
  glidein_startup.sh's startup-time run (:meth:`SimulatedGlidein.run_script`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.local.glidein import SimulatedGlidein, classad_text, cron_lines
from glidein_triton.worker import glidein_paths
from glidein_triton.worker.sandbox_protocol import JOB_AD_FILE

WRAPPER = r"""
# Stand-in job wrapper: the prejob part of gwms_process_scripts, then the job.
exit_wrapper() { echo "exit_wrapper: $1" >&2; exit "${2:-1}"; }
prejob_dir=$1
glidein_config=$2
shift 2
cd "$prejob_dir" || exit 98
for i in *; do
    [[ -e "$i" ]] || continue
    [[ "$i" != *.ignore ]] || continue
    if [[ -x "$i" ]]; then
        "./$i" "$glidein_config"
    elif [[ "$i" = *.sh || "$i" = *.source ]]; then
        . "./$i"
    fi
done
cd "$_CONDOR_SCRATCH_DIR" || exit 97
exec "$@"
"""
#: The container stand-in: $1 the sandbox, $2 the mount point it is seen at, $3 the glidein directory to
#: hide, then the job; run by ``unshare --mount --propagation private``.
CONTAINER = r"""
mount --bind "$1" "$2" || exit 96
mount -t tmpfs -o size=1m,mode=0755 glidein-hidden "$3" || exit 95
cd "$2" || exit 94
inside=$2
shift 3
exec env -i PATH=/usr/bin:/bin _CONDOR_SCRATCH_DIR="$inside" _CONDOR_JOB_AD="$inside/.job.ad" \
    _CONDOR_MACHINE_AD="$inside/.machine.ad" "$@"
"""
WRAPPERS = ("default", "exec", "container")
_job_numbers = itertools.count(1)


@dataclass
class Job:
    """A running simulated job: its wrapper process (which becomes the job) and its sandbox."""

    process: subprocess.Popen[str]
    #: the job's working directory (its ``_CONDOR_SCRATCH_DIR`` outside any container)
    sandbox: Path
    #: the starter's ``dir_<pid>``: ``sandbox``'s parent in the nested layout, ``sandbox`` in the flat one
    slot_dir: Path

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the job; (exit code, stdout, stderr)."""
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stdout, stderr

    def end(self) -> None:
        """The job ends and HTCondor removes its sandbox."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=30)
        shutil.rmtree(self.slot_dir, ignore_errors=True)


def job_ad_text(attributes: Mapping[str, str]) -> str:
    """An old-syntax job ad; values are ClassAd expressions (strings already quoted)."""
    return "".join(f"{name} = {value}\n" for name, value in attributes.items())


def start_job(
    glidein: SimulatedGlidein,
    command: Sequence[str],
    environment: Mapping[str, str],
    job_ad: Mapping[str, str] | None = None,
    container: str = "",
    inputs: Mapping[str, Path] | None = None,
    wrapper: str = "default",
) -> Job:
    """Start one job on ``glidein`` under ``wrapper`` (see the module doc); ``container`` (for the default
    wrapper) is "", "hidden" or "visible".

    "hidden": the glidein directory is not visible from the job (GlideinWMS's default for user jobs);
    "visible": it is, under another root (as with a bind of the operator's). The job's stdout and stderr
    are captured; the job ad gets a GlobalJobId unless ``job_ad`` has one. ``inputs`` (name in the sandbox:
    file or directory) are copied into the sandbox first, as HTCondor transfers a job's input files.
    """
    number = next(_job_numbers)
    slot_dir = glidein_paths.execute_dir(glidein.root) / f"dir_{os.getpid()}_{number}"
    sandbox = make_sandbox(slot_dir, glidein.nested_scratch)
    for name, source in (inputs or {}).items():
        if source.is_dir():
            shutil.copytree(source, sandbox / name)
        else:
            shutil.copyfile(source, sandbox / name)
    ad = {"GlobalJobId": f'"sim#{number}.0#{os.getpid()}"', **(job_ad or {})}
    (sandbox / ".machine.ad").write_text(classad_text(glidein.published()[0]))
    write_new(sandbox / JOB_AD_FILE, job_ad_text(ad))  # last: the starter runs the job once its ad is there
    env = dict(environment)
    env.update(_CONDOR_SCRATCH_DIR=str(sandbox), _CONDOR_JOB_AD=str(sandbox / JOB_AD_FILE))
    env["_CONDOR_MACHINE_AD"] = str(sandbox / ".machine.ad")
    if wrapper != "default":
        return Job(
            _popen(wrapped(wrapper, glidein, sandbox, slot_dir, command), env, sandbox), sandbox, slot_dir
        )
    prejob_dir = glidein_paths.phase_dir(glidein.root, "prejob")
    config_argument = str(glidein.config_path)
    if container:
        inside = glidein.root.parent / "srv" / slot_dir.name  # the sandbox as the job sees it ("/srv")
        inside.parent.mkdir(exist_ok=True)
        inside.symlink_to(sandbox)
        shutil.copytree(glidein.gwms_dir, glidein_paths.gwms_dir(sandbox), symlinks=True)
        prejob_dir = glidein_paths.phase_dir(inside, "prejob")
        env.update(
            GWMS_SINGULARITY_REEXEC="1",
            GWMS_SINGULARITY_OUTSIDE_PWD=str(sandbox),
            _CONDOR_SCRATCH_DIR=str(inside),
            _CONDOR_JOB_AD=str(inside / JOB_AD_FILE),
            HOME=str(inside),
        )
        if container == "visible":
            root = Path(tempfile.mkdtemp(prefix="container-root-", dir=glidein.root.parent))
            (root / "glidein").symlink_to(glidein.root)
            config_argument = str(root / "glidein" / "glidein_config")
        else:
            config_argument = str(inside) + "/"  # what gwms_process_scripts passes with no glidein_config
    argv = ["bash", "-c", WRAPPER, "wrapper", str(prejob_dir), config_argument, *command]
    return Job(_popen(argv, env, sandbox), sandbox, slot_dir)


def make_sandbox(slot_dir: Path, nested: bool) -> Path:
    """The starter's directories for one job (see the module doc); the job's working directory."""
    if not nested:
        slot_dir.mkdir(parents=True)
        return slot_dir
    slot_dir.mkdir(mode=0o755, parents=True)
    (slot_dir / "htcondor").mkdir(mode=0o755)
    (slot_dir / "user").mkdir(mode=0o700)
    (slot_dir / "scratch").mkdir()
    return slot_dir / "scratch"


def wrapped(
    wrapper: str, glidein: SimulatedGlidein, sandbox: Path, slot_dir: Path, command: Sequence[str]
) -> list[str]:
    """The argv of the ``exec`` or ``container`` wrapper around ``command``."""
    if wrapper == "exec":
        return ["sh", "-c", 'cd "$_CONDOR_SCRATCH_DIR" && exec "$@"', "wrapper", *command]
    if wrapper != "container":
        raise ValueError(f"wrapper {wrapper!r} is not one of {', '.join(WRAPPERS)}")
    mount_point = glidein.root.parent / f"container_{slot_dir.name}"
    mount_point.mkdir()
    unshare = ["unshare", "--mount", "--propagation", "private"]
    return [
        *unshare,
        "sh",
        "-c",
        CONTAINER,
        "container",
        str(sandbox),
        str(mount_point),
        str(glidein.root),
        *command,
    ]


def write_new(path: Path, text: str) -> None:
    """Write ``path`` whole, under its name only once complete."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _popen(argv: list[str], env: Mapping[str, str], sandbox: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        cwd=sandbox,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_periodic(
    glidein: SimulatedGlidein, environment: Mapping[str, str], first: bool = False, timeout: float = 120
) -> tuple[int, dict[str, str], str]:
    """Run the glidein's periodic script once, from the startd cron (or, with ``first``, as
    glidein_startup.sh's startup-time run); (exit code, attributes it printed, stderr)."""
    script = glidein.periodic or glidein.install_periodic()
    if first:
        result = glidein.run_script(script.path, script.owner, environment, timeout)
        return result.returncode, cron_lines(result.stdout), result.stderr
    run = glidein.run_cron_job(script, environment, timeout)
    return run.returncode, run.attributes, run.stderr

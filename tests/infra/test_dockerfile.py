"""The worker image, right by construction (no Docker engine runs here).

The Dockerfile's entrypoint is the command the tests run, every file it copies exists and
survives .dockerignore, and it installs the one list of worker pins.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

from .conftest import ROOT

DOCKERFILE = ROOT / "worker" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern of .dockerignore wins ('!' re-includes)."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, "**/" + pattern)
               or (pattern.startswith("**/") and fnmatch.fnmatchcase(p.split("/")[-1],
                                                                     pattern[3:]))
               for p in prefixes):
            ignored = not negate
    return ignored


def test_the_entrypoint_is_the_worker_command_the_tests_run():
    entrypoints = [rest for word, rest in _instructions() if word == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["rsbatch-worker"]
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'rsbatch-worker = "worker.cli:main"' in scripts


def test_every_copied_file_exists_and_reaches_the_build_context():
    copies = [shlex.split(rest) for word, rest in _instructions() if word == "COPY"]
    assert copies
    for args in copies:
        sources = [a for a in args[:-1] if not a.startswith("--")]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert not _ignored(relative), f"{relative} is excluded by .dockerignore"


def test_the_worker_modules_the_image_needs_are_all_copied():
    copied = " ".join(rest for word, rest in _instructions() if word == "COPY")
    for needed in ("qgis_rsbatch/core", "worker", "pyproject.toml"):
        assert needed in copied
    assert _ignored("tests/conftest.py") and _ignored(".venv/bin/python")


def test_the_pins_are_the_one_worker_list():
    """The image, the .venv and the plugin's worker environment install the same list."""
    shared = "qgis_rsbatch/worker_requirements.txt"
    listed = (ROOT / shared).read_text()
    for name in ("numpy", "rasterio", "boto3"):
        assert re.search(rf"^{name}\b", listed, re.MULTILINE), name
    assert f"-r {shared}" in (ROOT / "requirements.txt").read_text().splitlines()
    copies = [shlex.split(rest) for word, rest in _instructions() if word == "COPY"]
    copied_to = next(args[-1] for args in copies if args[0] == shared)
    runs = [rest for word, rest in _instructions() if word == "RUN"]
    assert any(f"pip install -r {copied_to}" in run for run in runs)
    # nothing pinned a second time beside the list
    assert not any(re.search(r'"(numpy|rasterio|boto3)[<>=]', run) for run in runs)


def test_the_container_does_not_run_as_root():
    users = [rest for word, rest in _instructions() if word == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_image_compiles_the_kernels_where_the_worker_finds_them():
    """The worker's compiled loops are built into the image, for the installed package
    (run from outside the source folder, which would shadow it), in the cache folder the
    environment names, and that folder belongs to the user the worker runs as: a job
    starts without compiling."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", text)
    assert cache, "NUMBA_CACHE_DIR is not set"
    runs = [rest for word, rest in _instructions() if word == "RUN"]
    assert any("cd / && python -m worker.kernels" in run for run in runs)
    user = [rest for word, rest in _instructions() if word == "USER"][-1]
    assert any(f"chown -R {user} {cache.group(1)}" in run for run in runs)

"""kubeflow/Dockerfile installs exactly what requirements.lock pins, on the Python the lock was compiled for."""

import json
import os
import re
import shlex

import pytest

from pipeline import configs, kubeflow_commands, kubeflow_runner

DOCKERFILE = os.path.join(configs.REPO_ROOT, "kubeflow", "Dockerfile")
LOCK_FILE = os.path.join(configs.REPO_ROOT, "requirements.lock")


def _instructions():
    """Return (INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    with open(DOCKERFILE) as dockerfile:
        text = dockerfile.read()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _lock():
    """Return ({normalized name: version}, header text) of requirements.lock."""
    pins = {}
    header = []
    with open(LOCK_FILE) as lock:
        for line in lock:
            if line.startswith("#"):
                header.append(line)
            match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
            if match:
                pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return pins, "".join(header)


def _pip_installs():
    """Return the argument lists of every `pip install` in a RUN instruction."""
    installs = []
    for keyword, arguments in _instructions():
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            words = shlex.split(command)
            if words[:2] in (["pip", "install"], ["pip3", "install"]) or words[:4] == ["python", "-m", "pip", "install"]:
                installs.append(words[words.index("install") + 1:])
    return installs


def test_image_base_matches_lock_python():
    froms = [arguments for keyword, arguments in _instructions() if keyword == "FROM"]
    assert len(froms) == 1
    words = froms[0].split()
    assert "--platform=linux/amd64" in words
    image = words[-1]
    match = re.fullmatch(r"python:(3)\.(\d+)\.(\d+)-slim-bookworm", image)
    assert match is not None, f"base image {image!r} is not a pinned python:X.Y.Z-slim-bookworm"
    _, header = _lock()
    assert "--python-version 3.10" in header
    assert f"{match.group(1)}.{match.group(2)}" == "3.10"
    assert "--python-platform x86_64-manylinux" in header


def test_image_installs_lock_file():
    copies = [arguments.split() for keyword, arguments in _instructions() if keyword == "COPY"]
    assert ["requirements.lock", "./"] in copies
    installs = _pip_installs()
    assert ["-r", "requirements.lock"] in installs
    assert ["--no-deps", "."] in installs


def test_image_pins_match_lock():
    pins, _ = _lock()
    allowed_unpinned = [["-r", "requirements.lock"], ["--no-deps", "."]]
    for arguments in _pip_installs():
        if arguments in allowed_unpinned:
            continue
        for requirement in arguments:
            if requirement.startswith("-"):
                continue
            name, separator, version = requirement.partition("==")
            assert separator, f"`pip install {requirement}` is not pinned: pin it to requirements.lock"
            normalized = re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()
            assert pins.get(normalized) == version, requirement


def test_image_lock_parser_reads_pins():
    pins, _ = _lock()
    assert pins["tfx"] == "1.16.0"
    assert pins["kfp"] == "2.5.0"
    assert pins["tensorflow"] == "2.16.2"


def test_image_environment_and_entry_point():
    instructions = _instructions()
    environment = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    assert "TF_USE_LEGACY_KERAS=1" in environment.split()
    entry_points = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    assert len(entry_points) == 1
    assert tuple(json.loads(entry_points[0])) == kubeflow_runner.TFX_CONTAINER_COMMAND


def test_image_workdir_holds_schema():
    instructions = _instructions()
    workdirs = [arguments for keyword, arguments in instructions if keyword == "WORKDIR"]
    assert workdirs == ["/pipeline"]
    copies = [arguments.split() for keyword, arguments in instructions if keyword == "COPY"]
    assert ["schemas/", "schemas/"] in copies
    assert kubeflow_commands.IMAGE_SCHEMA_PATH == "/pipeline/schemas/schema.pbtxt"


@pytest.mark.parametrize("source", ["requirements.lock", "setup.py", "pipeline", "components",
                                    "schemas/schema.pbtxt"])
def test_image_copy_sources_exist(source):
    assert os.path.exists(os.path.join(configs.REPO_ROOT, source))

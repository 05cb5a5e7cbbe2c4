"""requirements.lock, from which the image installs its dependencies (`pip install
--require-hashes`): every runtime dependency of pyproject.toml is pinned there, at a version
its requirement allows, and every pin carries the hashes of its files. (.ci/lock.sh --check,
run by CI, also compiles the lock again and compares; the image build installs from it.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?: ; ([^\\]+?))?\s*\\?$")


def pins() -> list[tuple[str, Version, str, list[str]]]:
    """(name, version, marker, hashes) of each entry of the lock."""
    entries: list[tuple[str, Version, str, list[str]]] = []
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            name, version, marker = match.groups()
            entries.append((canonicalize_name(name), Version(version), marker or "", []))
        elif line.strip().startswith("--hash=sha256:"):
            entries[-1][3].append(line.strip().removesuffix("\\").strip())
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"requirements.lock: unexpected line {line!r}")
    return entries


def test_every_pin_has_hashes() -> None:
    entries = pins()
    assert len(entries) >= 13
    for name, version, _, hashes in entries:
        assert hashes, f"{name}=={version} has no hash"


def test_every_dependency_is_pinned_at_a_version_it_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = pins()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        versions = [(v, m) for n, v, m, _ in locked if n == name]
        assert versions, f"{requirement.name} is not in requirements.lock: run bash .ci/lock.sh"
        for version, marker in versions:
            if not marker or Marker(marker).evaluate():
                assert requirement.specifier.contains(version, prereleases=True), (
                    f"requirements.lock pins {name}=={version}, pyproject.toml asks {requirement}"
                )

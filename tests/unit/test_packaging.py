"""What `pip install .` ships: every non-Python file the package reads at run time (the
HTML templates) and py.typed are declared as package data, and nothing declared is missing.
(Checked for real by building a wheel: `pip wheel --no-deps -w dist . && unzip -l dist/*.whl`.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cleanup"


def package_data() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["setuptools"]["package-data"]["cleanup"])


def test_every_data_file_of_the_package_is_declared() -> None:
    data = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert "outputs/templates/run.html.j2" in data and "py.typed" in data
    # setuptools expands each pattern as a glob relative to the package folder.
    shipped = {p.relative_to(PACKAGE).as_posix() for g in package_data() for p in PACKAGE.glob(g)}
    assert shipped >= data


def test_every_declared_pattern_matches_a_file() -> None:
    for pattern in package_data():
        assert list(PACKAGE.glob(pattern)), pattern


def test_the_template_engine_is_a_declared_dependency() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(d.startswith("jinja2") for d in config["project"]["dependencies"])


def test_every_third_party_module_the_package_imports_is_a_declared_dependency() -> None:
    import ast
    import re
    import sys
    from importlib.metadata import packages_distributions

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {
        re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower().replace("_", "-")
        for d in config["project"]["dependencies"]
    }
    homes = packages_distributions()
    # pydantic pins its own core to the exact version: declaring pydantic declares it.
    part_of = {"pydantic-core": "pydantic"}
    missing = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top == "cleanup" or top in sys.stdlib_module_names:
                    continue
                dists = {d.lower().replace("_", "-") for d in homes.get(top, [top])}
                dists |= {part_of[d] for d in dists if d in part_of}
                if not dists & declared:
                    missing.add(f"{path.relative_to(ROOT)}: {top} ({', '.join(sorted(dists))})")
    assert not missing, sorted(missing)

"""What a non-editable ``pip install .`` ships: every package of the source tree is listed."""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _declared() -> dict:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    packages = [p.strip() for p in cfg["options"]["packages"].split() if p.strip()]
    dirs = {}
    for line in cfg["options"]["package_dir"].strip().splitlines():
        name, _, folder = (part.strip() for part in line.partition("="))
        dirs[name] = folder
    return {"packages": packages, "dirs": dirs}


def _folder(package: str, dirs: dict) -> Path:
    """Where setuptools looks for ``package`` under ``package_dir``."""
    parts = package.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in dirs:
            return REPO / dirs[prefix] / Path(*parts[k:])
    return REPO / Path(*parts)


def test_every_python_package_in_the_tree_is_declared() -> None:
    declared = _declared()
    packages, dirs = declared["packages"], declared["dirs"]
    for package in packages:
        assert (_folder(package, dirs) / "__init__.py").is_file() or package in ("i2v.configs", "i2v.checkpoints"), (
            package
        )
    shipped = {_folder(p, dirs).resolve() for p in packages}
    for top in {REPO / d for d in dirs.values()}:
        for init in top.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            assert init.parent.resolve() in shipped, (
                f"{init.parent.relative_to(REPO)} is a package that setup.cfg's [options] packages does not list: "
                "a non-editable install would leave it out"
            )

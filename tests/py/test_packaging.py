"""The wheel holds every source file of the package: scikit-build-core drops files matching the sdist
exclusions and .gitignore from wheel.packages too (an unanchored `data` once dropped orchard.utils.data)."""
import pathlib
import tomllib

import pathspec

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_no_package_source_is_excluded_from_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["scikit-build"]
    ignored = pathspec.GitIgnoreSpec.from_lines((ROOT / ".gitignore").read_text().splitlines()
                                                + config["sdist"]["exclude"])
    for package in config["wheel"]["packages"]:
        sources = [p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")]
        assert sources and not [s for s in sources if ignored.match_file(s)]

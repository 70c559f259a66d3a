"""Where the app's files are, wherever it runs from.

In a source checkout (and an editable install) `templates/` and `migrations/` sit beside the
`scheduler` package; an installed wheel carries them inside the package (`scheduler/templates`,
`scheduler/migrations`, see pyproject.toml). Nothing here depends on the working directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE.parent


def _data(name: str) -> Path:
    inside = PACKAGE / name
    return inside if inside.is_dir() else SOURCE_ROOT / name


TEMPLATES = _data("templates")
MIGRATIONS = _data("migrations")
STATIC = TEMPLATES / "static"


def in_source_tree() -> bool:
    """True when running from a checkout (pyproject.toml beside the package)."""
    return (SOURCE_ROOT / "pyproject.toml").is_file()

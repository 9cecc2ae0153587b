"""The schema catalog: every Avro schema the project has ever written, indexed by fingerprint.

Single-object encoding puts the writer schema's CRC-64-AVRO fingerprint in front of each
record. Keeping every historical schema in ``schemas/`` (current ones at the top level,
superseded ones under ``schemas/history/``) lets a reader resolve old writer schemas into
the current reader schema without a registry server.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from .errors import SerdeError


def schemas_dir() -> Path:
    """Where the .avsc files live: ``PIPELINE_SCHEMAS_DIR`` or the ``schemas`` folder shipped with the package."""
    env = os.environ.get("PIPELINE_SCHEMAS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "schemas"


@dataclass(frozen=True)
class SchemaEntry:
    """One schema version: its full name, parsed form and 8-byte little-endian fingerprint."""

    name: str
    parsed: Any
    fingerprint: bytes
    current: bool


@dataclass
class Catalog:
    """Schemas by fingerprint (any version) and by full name (the current version, used to write and read)."""

    by_fingerprint: dict[bytes, SchemaEntry] = field(default_factory=dict)
    current: dict[str, SchemaEntry] = field(default_factory=dict)

    def add(self, raw: dict[str, Any], current: bool) -> SchemaEntry:
        """Register a schema. Two current versions of one name are a packaging mistake, so they raise."""
        parsed = parse_schema(raw, _write_hint=False)
        canonical = to_parsing_canonical_form(parsed)
        fp = int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")
        name = parsed["name"] if isinstance(parsed, dict) else str(parsed)
        entry = SchemaEntry(name=name, parsed=parsed, fingerprint=fp, current=current)
        self.by_fingerprint[fp] = entry
        if current:
            if name in self.current and self.current[name].fingerprint != fp:
                raise SerdeError(f"two current schemas named {name!r} in the catalog")
            self.current[name] = entry
        return entry

    def schema(self, name: str) -> SchemaEntry:
        """The current schema for a full name such as ``pipeline.Event``."""
        try:
            return self.current[name]
        except KeyError:
            raise SerdeError(f"no current schema named {name!r}; known: {sorted(self.current)}") from None

    @classmethod
    def load(cls, directory: Path) -> Catalog:
        """Read ``*.avsc`` (current) and ``history/*.avsc`` (superseded versions) from a folder."""
        catalog = cls()
        if not directory.is_dir():
            raise SerdeError(f"schema folder {directory} does not exist")
        for path in sorted(directory.glob("*.avsc")):
            catalog.add(_read(path), current=True)
        for path in sorted((directory / "history").glob("*.avsc")):
            catalog.add(_read(path), current=False)
        return catalog


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SerdeError(f"cannot read schema {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SerdeError(f"schema {path} is not a JSON object")
    return raw


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The process-wide catalog, loaded once from :func:`schemas_dir`."""
    return Catalog.load(schemas_dir())

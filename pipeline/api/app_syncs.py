"""The apps' last syncs, as the API reads them: a table fed by the compacted ``app-syncs`` topic.

``POST /fn/register`` writes each sync's result there (pipeline/api/register.py); this table gives ``GET
/v1/apps`` and the dev UI the last one per app, a refusal's problems included, on every API instance and
after a restart.
"""

from __future__ import annotations

from typing import Any

from ..serde import APP_SYNC, Serde
from .tables import RecordTable


class AppSyncTable(RecordTable):
    """App id (or URL) -> its last ``AppSync``, from the one-partition ``app-syncs`` topic."""

    def __init__(self, servers: str, topic: str, *, serde: Serde | None = None) -> None:
        super().__init__(servers, topic, name="app-syncs", schema=APP_SYNC, serde=serde)

    def all(self) -> dict[str, dict[str, Any]]:
        with self._cond:
            return dict(self.records)

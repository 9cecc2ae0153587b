"""The contract between :class:`pipeline.kafka.loop.ServiceLoop` and a service: :class:`Processor`.

Every hook the loop calls is declared here once, with a no-op default and what the loop promises around it, so
a service overrides what it needs and mypy checks the signatures (a misspelt override is a new method the loop
never calls; decorate overrides with ``typing_extensions.override`` and mypy reports the misspelling). The loop
calls the hooks directly; it never probes for them.

Per-partition state is declared, not hand-built: a processor returns its :class:`~pipeline.kafka.tables.PartitionTables`
from :meth:`Processor.partition_tables`, and the loop creates (and, from a changelog topic, restores) a table per
assigned partition before :meth:`Processor.assigned`, and drops it when the partition is revoked, before
:meth:`Processor.revoked`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from confluent_kafka import Message, TopicPartition

from .emitter import Emitter
from .tables import PartitionTables

if TYPE_CHECKING:
    from typing_extensions import override

    from .loop import ServiceLoop
else:
    _F = TypeVar("_F", bound=Callable[..., Any])

    def override(method: _F) -> _F:
        """``typing_extensions.override`` for mypy (an override of nothing is an error: a misspelt hook); a no-op
        at run time."""
        return method

__all__ = ["Processor", "override"]


class Processor:
    """A service run by :class:`~pipeline.kafka.loop.ServiceLoop`. ``name``, :meth:`topics` and :meth:`process` are
    required; every other hook has a no-op default."""

    #: The service's name: metrics label, log field, consumer group ``pipeline-<name>``.
    name: str = ""

    #: Output produced only at the commit, before the offsets: all of it (True) or to these topics (a set). A
    #: transaction's first record in a partition hides that partition's later records, other producers' too,
    #: from read-committed readers until the commit (see :mod:`pipeline.kafka.committing`).
    defer_output: bool | frozenset[str] = False

    #: With :meth:`urgent`: whether urgent records get a commit of their own when much work is ahead of them
    #: (False: their output that anyone waits for is all sent ``at_once``).
    commit_urgent: bool = True

    def topics(self) -> list[str]:
        """Full names of the topics to subscribe to."""
        raise NotImplementedError

    def process(self, msg: Message, out: Emitter) -> None:
        """Handle one record; raise to dead-letter it (the message says why). Its output is dropped then, and
        :meth:`discard` is called."""
        raise NotImplementedError

    def urgent(self, msg: Message) -> bool:
        """Whether to process this record ahead of the backlog (cancellations; :mod:`pipeline.kafka.lookahead`).
        Only a processor that overrides it gets a lookahead. A record it raises on is not urgent."""
        return False

    @property
    def waiting(self) -> bool:
        """Work waits on :meth:`tick` (the owner's gate): the loop then ticks every 2 ms at least."""
        return False

    def tick(self, out: Emitter, now: int) -> None:
        """Once per batch (also an empty one), after its records: emit on a timer. Raise and its output is
        dropped, :meth:`discard` is called and the loop goes on. Only called when overridden."""

    def end_batch(self, out: Emitter) -> None:
        """Before each commit (at the end of the batch that ends a commit window, which may span several batches;
        before an early commit; at a rebalance and at the stop): emit what was kept back since the last one. No
        offset commits before it has been called. Only called when overridden."""

    def discard(self) -> None:
        """The record being processed (or the tick) failed: undo every in-memory change it made."""

    def bind(self, loop: ServiceLoop) -> None:
        """The loop that runs this processor, once, when it is made (read its positions from its own thread; ask
        for a commit at the end of the batch with ``loop.request_commit()``)."""

    def partition_tables(self) -> Sequence[PartitionTables[Any]]:
        """The per-partition state the loop keeps: created (and restored) on assignment, dropped on revocation.
        Called at each rebalance."""
        return ()

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions added (cooperative: not the whole assignment), or all of them again after an aborted
        transaction. Their tables are restored already: derive what else depends on them."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions gone (or lost), or all of them before a rebuild. Their tables are dropped already."""

    def close(self) -> None:
        """The loop stopped: release what the processor holds (threads, clients)."""


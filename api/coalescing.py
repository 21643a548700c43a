"""Questions of one kind asked at the same time, answered together: one thread reads for all of them.

A retrieve or a session's transcript the answer cache does not hold costs one read, and most of that is
fixed: the transaction, the snapshot mark and planning the statement cost more than finding one turn
(bench/README.md, "Misses asked at once, answered together"). Under load many such requests wait at once,
each for its own read. So each kind of such question has a `Coalescer`: a request that finds no batch of
its kind being read reads at once (a lone request waits for nothing); requests that arrive while one is
read queue up, and when it ends the first of them reads for all of them (up to `max_batch`), with one
statement for all their keys. One batch at a time: two at once (DuckDB reading one while Python renders
the other) made smaller batches and cost more CPU.

Each answer is then the one its own read would have given in that snapshot, which began after the
request arrived: at least as new as the answer it would have had alone. The answers are remembered per
snapshot like any other (`api.snapshot_cache`).

When a batch fails, its requests are not failed with it: each is told to read alone, so a question that
cannot be read does not take the others down, and a failure that is not the question's reaches each
request from its own read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

A = TypeVar("A")


@dataclass(eq=False, slots=True)
class Waiting(Generic[A]):
    """One request's question, until its answer (or its turn to read for the others) comes."""

    question: A
    answer: Any = None
    answered: bool = False  # False until a read answered it: a batch that failed (or was interrupted)
    lead: bool = False  # its turn to read for the next batch
    ready: threading.Event = field(default_factory=threading.Event)


class Coalescer(Generic[A]):
    """Questions queued while a batch is read, one batch at a time, each by one of its requests' threads."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[Waiting[A]] = []
        self._busy = False  # a batch is being read, or its successor is about to take the next
        # For /metrics: batches read, and the questions they answered.
        self.batches = 0
        self.questions = 0

    def counts(self) -> tuple[int, int]:
        """(batches read, questions they answered) so far."""
        with self._lock:
            return self.batches, self.questions

    def waiting(self) -> int:
        """The questions queued for a batch not yet begun."""
        with self._lock:
            return len(self._queue)

    def ask(self, question: A, read: Callable[[Sequence[A]], Sequence[Any]]) -> tuple[bool, Any]:
        """(True, answer) once `read` (of a list of questions: their answers in the same order) answered
        `question`, alone or with others; (False, None) when that read failed, so that the caller reads
        alone. `read` runs in the calling thread when it is this request's turn to lead a batch."""
        me = Waiting(question)
        with self._lock:
            self._queue.append(me)
            lead = not self._busy
            self._busy = True
        if not lead:
            me.ready.wait()
            if not me.lead:
                return me.answered, me.answer
        with self._lock:
            # Its own question (first in the queue: no batch was being read, or the one that ended handed
            # the next to it) and the oldest of the others.
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        assert batch[0] is me
        try:
            answers = read([w.question for w in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} questions")
            for w, answer in zip(batch, answers, strict=True):
                w.answer, w.answered = answer, True
        except Exception:
            pass  # each of them reads alone (the module's docstring)
        finally:
            with self._lock:
                self.batches += 1
                self.questions += len(batch)
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._busy = False
                else:
                    successor.lead = True
            for w in batch:
                if w is not me:
                    w.ready.set()
            if successor is not None:
                successor.ready.set()
        return me.answered, me.answer

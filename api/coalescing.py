"""Questions of one kind asked at the same time, answered together: one thread reads for all of them.

A retrieve or a session's transcript the answer cache does not hold costs one read transaction, and
most of that is fixed: the transaction, the snapshot mark and planning the statement cost more than
finding one turn (bench/README.md, "Concurrent misses answered together"). Under load many such
requests wait at once, each for its own transaction. So each kind of such question has a `Coalescer`:
a request that finds fewer than `max_running` batches being read reads at once (a lone request waits for
nothing); requests that arrive while that many are read queue up, and when one batch ends the first of
them reads for all of them (up to `max_batch`) in one transaction, with one statement for all their keys.
Two batches at once by default: DuckDB reads one while Python turns the other's rows into answers, so
both cores stay busy.

Each answer is then the one its own transaction would have given in that snapshot, which began after
the request arrived: at least as new as the answer it would have had alone. The answers are remembered
per snapshot like any other (`api.snapshot_cache`).

When a batch fails, its requests are not failed with it: each is told to read alone, so a
question that cannot be read does not take the others down, and a failure that is not the question's
reaches each request from its own read.
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
    lead: bool = False  # its turn to read for the batch it heads
    ready: threading.Event = field(default_factory=threading.Event)


class Coalescer(Generic[A]):
    """Questions queued while `max_running` batches are read, each by one of its requests' threads."""

    def __init__(self, max_batch: int, max_running: int = 1) -> None:
        self.max_batch = max_batch
        self.max_running = max_running
        self._lock = threading.Lock()
        self._queue: list[Waiting[A]] = []
        self._running = 0
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
            lead = self._running < self.max_running
            if lead:
                self._running += 1
        if not lead:
            me.ready.wait()
            if not me.lead:
                return me.answered, me.answer
        with self._lock:
            # Its own question and the oldest of those waiting, but not those already told to lead a
            # batch of their own: they are about to take theirs.
            others = [w for w in self._queue if w is not me and not w.lead][: self.max_batch - 1]
            batch = [me, *others]
            taken = {id(w) for w in batch}
            self._queue = [w for w in self._queue if id(w) not in taken]
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
                successor = next((w for w in self._queue if not w.lead), None)
                if successor is None:
                    self._running -= 1
                else:
                    successor.lead = True
            for w in batch:
                if w is not me:
                    w.ready.set()
            if successor is not None:
                successor.ready.set()
        return me.answered, me.answer

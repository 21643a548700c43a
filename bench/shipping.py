"""What shipping prepared batches from a reader process to the writer costs, per event, on each side.

`python -m bench.shipping` prepares `--events` demo events in batches of `pipeline.SHIP_RECORDS` in a
child process started as a rebuild's readers are (spawn), then times what the rest of a rebuild does with
them: the child pickles each batch and sends it, the parent takes it and makes the `PreparedBatch` again.
It prints the CPU time per event of each step, for the pipe `pipeline.catch_up` ships through
(`projector.batch_pipe`) and for the `multiprocessing` queue it replaced (the pickled batch put on the
queue as a tuple, as the readers did), alternately, `--rounds` times each. Both pipes are widened to
`batch_pipe.PIPE_BYTES`. `bench.stages` times the pickling and unpickling in one process; this adds what
crosses between two, which only two processes show.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import statistics
import time
from typing import Any

from projector import batch_pipe, pipeline
from projector.prepare import PreparedBatch

PIPE, QUEUE = "batch pipe", "multiprocessing queue"


def _child(events: int, way: str, out: Any, slots: Any, report: Any) -> None:
    from bench.live_fold import demo_records
    from projector.prepare import prepare

    records = demo_records(events, seed=1)
    step = pipeline.SHIP_RECORDS
    shipped = [prepare(records[i : i + step]).shipped() for i in range(0, events, step)]
    del records
    report.put("ready")
    sender = batch_pipe.Sender(out, slots) if way == PIPE else None
    began = time.process_time()
    pickling = 0.0
    for fields in shipped:
        started = time.process_time()
        payload = pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
        pickling += time.process_time() - started
        if sender is not None:
            sender.send(batch_pipe.BATCH, payload)
        else:
            out.put((None, payload))
    if sender is not None:
        sender.send(batch_pipe.DONE)
        sender.close(flush=True)
    else:
        out.put(("done", None))
        out.close()
        out.join_thread()
    report.put((pickling, time.process_time() - began))


def measure(events: int, way: str = PIPE) -> dict[str, float]:
    """CPU µs per event: the reader's pickling and sending, the writer's taking and unpickling."""
    ctx = mp.get_context("spawn")
    report = ctx.Queue()
    slots = ctx.BoundedSemaphore(pipeline.QUEUE_DEPTH)
    receiver: batch_pipe.Receiver | None = None
    if way == PIPE:
        receiving, out = batch_pipe.open_pipe(ctx)
    else:
        out = ctx.Queue(pipeline.QUEUE_DEPTH)
        batch_pipe.widen(out._reader)  # type: ignore[attr-defined]
    child = ctx.Process(target=_child, args=(events, way, out, slots, report), daemon=True)
    child.start()
    if way == PIPE:
        out.close()
        receiver = batch_pipe.Receiver([receiving], slots)
    report.get()
    taking = unpickling = 0.0
    n = 0
    while True:
        started = time.process_time()
        if receiver is not None:
            message = receiver.receive(timeout=60)
            assert message is not None, "nothing shipped within 60 s"
            done, payload = message[0] == batch_pipe.DONE, message[1]
        else:
            tag, payload = out.get(timeout=60)
            done = tag == "done"
        taking += time.process_time() - started
        if done:
            break
        started = time.process_time()
        n += len(PreparedBatch.from_shipped(pickle.loads(payload)))
        unpickling += time.process_time() - started
    pickling, reader = report.get()
    child.join(60)
    if n != events:
        raise RuntimeError(f"{n} events arrived of {events}")
    us = 1e6 / max(n, 1)
    return {
        "pickle": pickling * us,
        "send": (reader - pickling) * us,
        "take": taking * us,
        "unpickle": unpickling * us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="demo events shipped per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way, alternately")
    args = parser.parse_args()
    figures: dict[str, list[dict[str, float]]] = {QUEUE: [], PIPE: []}
    for _ in range(args.rounds):
        for way in figures:
            row = measure(args.events, way)
            figures[way].append(row)
            print(
                f"{way}: reader pickle {row['pickle']:.2f} + send {row['send']:.2f},"
                f" writer take {row['take']:.2f} + unpickle {row['unpickle']:.2f} µs per event",
                flush=True,
            )
    for way, rows in figures.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"median, {way}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
            + f"; all four {sum(medians.values()):.2f} µs per event"
        )


if __name__ == "__main__":
    main()

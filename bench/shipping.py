"""What shipping prepared batches from a reader process to the writer costs, per event, on each side.

`python -m bench.shipping` prepares `--events` demo events in batches of `pipeline.SHIP_RECORDS` in a
child process started as a rebuild's readers are (spawn), then times what the rest of a rebuild does with
them: the child pickles each batch and puts it on a `multiprocessing` queue, the parent takes it off
and makes the `PreparedBatch` again. It prints the CPU time per event of each step, for the queue as
`pipeline.catch_up` makes it (its pipe widened to `pipeline.PIPE_BYTES`) and with Linux's default pipe
buffer (64 KiB), alternately, `--rounds` times each. `bench.stages` times the pickling and unpickling in
one process; this adds the pipe between two, which only two processes show.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import statistics
import time
from typing import Any

from projector import pipeline
from projector.prepare import PreparedBatch


def _child(events: int, out: Any, report: Any) -> None:
    from bench.live_fold import demo_records
    from projector.prepare import prepare

    records = demo_records(events, seed=1)
    step = pipeline.SHIP_RECORDS
    shipped = [prepare(records[i : i + step]).shipped() for i in range(0, events, step)]
    del records
    report.put("ready")
    began = time.process_time()
    pickling = 0.0
    for fields in shipped:
        started = time.process_time()
        payload = pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
        pickling += time.process_time() - started
        out.put(payload)
    out.put(None)
    out.close()
    out.join_thread()
    report.put((pickling, time.process_time() - began))


def measure(events: int, *, widened: bool) -> dict[str, float]:
    """CPU µs per event: the reader's pickling and putting, the writer's taking and unpickling."""
    ctx = mp.get_context("spawn")
    out, report = ctx.Queue(pipeline.QUEUE_DEPTH), ctx.Queue()
    if widened:
        pipeline.widen(out)
    child = ctx.Process(target=_child, args=(events, out, report), daemon=True)
    child.start()
    report.get()
    taking = unpickling = 0.0
    n = 0
    while True:
        started = time.process_time()
        payload = out.get()
        taking += time.process_time() - started
        if payload is None:
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
        "put": (reader - pickling) * us,
        "take": taking * us,
        "unpickle": unpickling * us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="demo events shipped per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each pipe, alternately")
    args = parser.parse_args()
    names = {False: "default pipe", True: f"pipe of {pipeline.PIPE_BYTES:,} bytes"}
    figures: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for widened in (False, True):
            row = measure(args.events, widened=widened)
            figures[widened].append(row)
            print(
                f"{names[widened]}: reader pickle {row['pickle']:.2f} + put {row['put']:.2f},"
                f" writer take {row['take']:.2f} + unpickle {row['unpickle']:.2f} µs per event",
                flush=True,
            )
    for widened, rows in figures.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"median, {names[widened]}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
            + f"; all four {sum(medians.values()):.2f} µs per event"
        )


if __name__ == "__main__":
    main()

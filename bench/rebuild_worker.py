"""A rebuild into a fresh file through `ProjectorService.run_until_caught_up()`, as its own process.

The benchmark uses `chat-analytics rebuild --db NEW_FILE` when that command exists; this is the
stand-in until then, doing what a rebuild does: fold the topic from offset 0 into an empty file.

    python -m bench.rebuild_worker BOOTSTRAP TOPIC DB_FILE
"""

from __future__ import annotations

import sys
import time
import uuid

import orjson

from projector.service import ProjectorService
from projector.source import TopicSource
from schemas.readmodel import connect
from schemas.settings import Settings


def main() -> int:
    bootstrap_servers, topic, db = sys.argv[1], sys.argv[2], sys.argv[3]
    started = time.perf_counter()
    con = connect(db)
    try:
        # A group of its own, so the rebuild's lag-monitoring commits do not move the live projector's.
        group = f"chat-analytics-bench-rebuild-{uuid.uuid4().hex[:8]}"
        service = ProjectorService(TopicSource(bootstrap_servers, topic, group, Settings.from_env().batch_size), con)
        folded = service.run_until_caught_up()
        service.stop()
    finally:
        con.close()
    print(orjson.dumps({"records": folded, "seconds": time.perf_counter() - started}).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

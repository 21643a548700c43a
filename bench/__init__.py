"""Benchmarks (`make bench`, `python -m bench`): replay, API latency at scale, freshness.

- `__main__`: the command line and the run order (broker, topic of demo traffic, the three benchmarks).
- `machine`: what the figures were measured on (CPU, cores, memory, versions).
- `stats`: percentiles and rates.
- `children`: sub-processes that cannot outlive the run, and the peak RSS of one child.
- `traffic`: the demo topic (fast raw publishing) and rate-limited publisher processes.
- `raw_read`: the ceiling, as a child process: kafka-python reading and decoding the whole topic.
- `rebuild_worker`: a rebuild through `ProjectorService`, for when `chat-analytics rebuild` is missing.
- `replay`: benchmark 1, the raw read against the rebuild into a fresh file.
- `server`: `chat-analytics serve` as a child process on a free loopback port.
- `load`: the HTTP load driver, as a child process: keep-alive connections for a fixed time per endpoint.
- `api_latency`: benchmark 2, every endpoint over the 1M-event read model while ingest runs.
- `freshness`: benchmark 3, from the publisher's acknowledgement to the API returning the event.
- `report`: the JSON result files, the printed table and `results/latest.md`.
- `profiling`: py-spy profiles for `--profile`.
- `replica_catchup`: `python -m bench.replica_catchup`, how long a new read replica takes to be ready.

See bench/README.md. Benchmarks print figures and compare them with the targets; nothing here is a test, and no test
asserts on timings.
"""

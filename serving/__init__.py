"""Serving the read model at run time (imports only `schemas`).

- `handle`: `ReadModelHandle`, the file a process currently serves (a read lease per unit of work, a
  swap under the write side of its `ReadersWriterLock`), `ReadModelUnavailable`, `is_fatal`.
- `copy`: a consistent copy of a served file, taken while it is served and folded (`chat-analytics snapshot`).
"""

"""Serving the read model at run time (imports only `schemas`).

- `handle`: `ReadModelHandle`, the file a process currently serves (a read lease per unit of work, a
  swap under the write side of its `ReadersWriterLock`), `ReadModelUnavailable`, `is_fatal`.
- `changes`: `ChangeLog`, what each live commit to the served file changed, by key, under the snapshot
  marks before and after it (`MARK_SQL`), so that answers of untouched keys outlive commits.
- `copy`: a consistent copy of a served file, taken while it is served and folded (`chat-analytics snapshot`).
"""

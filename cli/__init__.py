"""The `chat-analytics` command: one module per command group, composing the other packages.

- `main`: the entry point and the list of command modules (`*_cmd`), each with `register(subparsers)`.
- `options`: the flags several commands share; `logs`: logging of `serve` and `project`.
- `progress`, `admin_client`: a progress display, and a client of a running `serve`'s admin endpoints.

The only package where the projector and the API meet (`serve` runs both in one process).
"""

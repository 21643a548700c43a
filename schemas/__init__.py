"""The ground floor every other package may import: the event contract, the read model, the settings.

- `events`: the event contract (docs/events.md) as Pydantic models, the single source of truth.
- `registry`: parsing raw Kafka values into events, versions and upcasters, the dead-letter reasons.
- `export`: the JSON Schemas of `schemas/json/`, generated from the models (`python -m schemas.export`).
- `readmodel`: the DuckDB tables, their version, opening a file, and the handle `serve` reads through.
- `conversation_rows`: the SQL of a conversation row, shared by the projector and the API.
- `fulltext`: the one English text analysis of the fold and of the `query` filter.
- `position`: the read model's position, the token clients hold across replicas.
- `settings`: every environment variable and its default.
- `storage`: free space of the data directory.

Imports nothing of the project.
"""

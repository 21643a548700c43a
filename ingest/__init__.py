"""The ingest side: how events get onto the topic.

- `ingest.publisher`: the Python publisher (one method per event type, validated, idempotent producer).
- `ingest.http`: `POST /api/events/` for publishers in other languages.
- `ingest.demo`: deterministic, realistic demo traffic as encoded (key, value) pairs.
- `ingest.envelope`, `ingest.slug`: what both publishing paths fill in (ids, time, user_slug, cut input).
- `ingest.erasure`: checking an erasure request before it is published (`chat-analytics erase`, the admin endpoint).

Never imports the projector or the API; both sides meet only in `schemas`. The API imports
`ingest.http`'s answers and `ingest.erasure`'s checks for its erasure endpoint.
"""

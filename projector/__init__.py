"""The projector: folds the event topic into the DuckDB read model, exactly once.

- `records`: the Kafka-free record the fold consumes.
- `fold`: the pure fold (`prepare` + `apply_prepared`, or `apply_batch` for both), one transaction per batch.
- `aggregates`: the SQL that recomputes sessions, user_stats and daily_counters for the keys a batch touched.
- `snapshot`: `table_rows(con)`, the comparable content of a read-model file.
- `source`: `TopicSource`, where to read (servers, topic, group id, batch size).
- `consumer`: the Kafka side (seek to stored offsets, poll, commit for lag monitoring only).
- `pipeline`: catch-up mode with parsing in a separate process.
- `service`: `ProjectorService`, the background thread the API and `chat-analytics project` run.
- `rebuild`: folding the topic into a fresh file up to fixed offsets (end offsets, or `--until`), with progress.
- `bluegreen`: `LiveProjection`, the projector of `serve` and its rebuild-and-switch without downtime.
- `deadletters`: list, export and retry (through the same fold) of the dead-letter table.
- `status`: what `chat-analytics status` reports about a file and the topic's end offsets.
"""

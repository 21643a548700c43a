"""The projector: folds the event topic into the DuckDB read model, exactly once.

- `records`: the Kafka-free record the fold consumes.
- `fold`: what each event type does (its docstring), and `apply_batch` for both steps of a batch.
- `prepare`: step 1, a batch of records parsed (Pydantic) and shaped into rows, one function per event type;
  what a parser process ships to the writer.
- `sqlprepare`: step 1 set-wise, the same rows from a batch of raw values with DuckDB's JSON functions
  (catch-up's columns path; anything unusual falls back to `prepare`).
- `apply`: step 2, a prepared batch written in one transaction with the offsets, its SQL beside it.
- `conversations`: the `conversations` table kept up to date for the sessions a batch touched.
- `forget`: erasures and the retention purge, the one way turns leave the read model.
- `arrow_views`: Arrow tables lent to DuckDB by name for one block of statements.
- `gcpause`: cyclic garbage collection paused around work that makes many objects and no cycles.
- `aggregates`: the SQL that recomputes sessions, user_stats and daily_counters for the keys a batch touched.
- `snapshot`: `table_rows(con)`, the comparable content of a read-model file.
- `source`: `TopicSource`, where to read (servers, topic, group id, batch size).
- `consumer`: the Kafka side (seek to stored offsets, poll, commit for lag monitoring only).
- `pipeline`: catch-up mode with parsing in a separate process.
- `live_parse`: `LiveParser`, live batches parsed in a child process, so that `serve`'s requests do not wait for it.
- `service`: `ProjectorService`, the background thread the API and `chat-analytics project` run.
- `rebuild`: folding the topic into a fresh file up to fixed offsets (end offsets, or `--until`), with progress.
- `bluegreen`: `LiveProjection`, the projector of `serve` and its rebuild-and-switch without downtime.
- `deadletters`: list, export and retry (through the same fold) of the dead-letter table.
- `status`: what `chat-analytics status` reports about a file and the topic's end offsets.
"""

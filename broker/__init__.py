"""Finding or starting a Kafka broker, and the event topic.

- `selection`: which broker the tests, the demo and the benchmarks use (environment, Docker, local).
- `container`: a throw-away broker in Docker, through testcontainers.
- `jars`, `local`: the local single-node Kafka from Maven-resolved jars (`chat-analytics broker`).
- `lifetime`, `watchdog`: a broker a process started cannot outlive it.
- `probe`: is a broker answering?
- `topics`: creating the topic with the retention policy's retention, and checking it.
"""

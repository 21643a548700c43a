"""Loopback ports for the servers the project starts: the local Kafka broker, `serve` processes, read
replicas, HAProxy, and the servers of the tests and benchmarks (`loopback.ports`). Imports nothing of the
project, so that every package may use it."""

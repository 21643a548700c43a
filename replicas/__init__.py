"""Read replicas: several `serve` processes, each folding the whole topic into its own file, behind
HAProxy (`replicas.haproxy`), started locally without Docker by `replicas.local` (`chat-analytics
replicas`); `replicas.process` ends a child process as an orchestrator would. See docs/scaling.md."""

"""Who may call what, for both HTTP surfaces (the staff API and the ingest endpoint).

- `tokens`: the tokens of `CHAT_ANALYTICS_API_TOKENS` and of the hashed tokens file, and their roles.
- `http`: the `Authorization: Token <token>` check.

Imports nothing of the project.
"""

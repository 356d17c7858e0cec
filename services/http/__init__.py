"""The HTTP API (ADR 0170-0174): a thin edge in front of the engine's NATS request/reply API.

``app.build_app`` composes the Litestar application from small router modules
(``routes/``); each route authenticates by API key (``auth``), forwards the NATS command the CLI
would send as that identity (``gateway``), and maps the engine's reply to a status code
(``errors``). Reads of per-intent documents come from the projection tables.
"""

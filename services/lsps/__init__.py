"""LSP specifications (bLIP 50-52) over the Lightning node port: LSPS0's transport, the
LSPS1 client, and the server-side dispatcher an LSP builds on (ADR 0250)."""

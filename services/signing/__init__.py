"""Signatures behind a port: the engine signs what it sends, executors verify what they get.

``port.py`` is the interface (a ``Signer`` with a key id, a ``Verifier`` keyed by key id);
``ed25519.py`` holds in-memory Ed25519 keys; ``file_keys.py`` is the default adapter (keys in
files under the state directory); ``orders.py`` says which bytes of a work order are signed.
A KMS or HSM adapter implements the port and nothing else changes (ADR 0063).
"""

"""Signed release provenance (ADR 0185): a manifest of a release's artefacts and their
digests, signed with an offline Ed25519 release key, and its verification.

``keys.py`` holds the release keyring (public keys with a validity window) and key generation;
``manifest.py`` builds, signs and verifies a manifest; ``cli.py`` is ``corridor release``.
"""

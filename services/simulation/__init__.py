"""A deterministic simulation of the engine, replayable by seed (ADR 0099, 0100)."""

"""BOLT 11 invoices, as pure code (no I/O): the fast reader the intake uses (``reader``) and
the codec with the spec's reader rules and a node-key encoder (``codec``). It sits outside
``services/lightning/`` (the node adapters) because the engine's intake, the executors and the
simulated network all read invoices, and none of them should depend on the adapters' folder.
"""

"""Just-in-time channels sold over LSPS2 (bLIP-52): we are the LSP. Pure: no I/O."""

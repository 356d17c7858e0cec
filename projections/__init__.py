"""Read models built by folding the event log. Each can be rebuilt at any time by replay."""

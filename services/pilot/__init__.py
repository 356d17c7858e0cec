"""``corridor pilot``: the pilot report over the projections, and its thresholds file."""

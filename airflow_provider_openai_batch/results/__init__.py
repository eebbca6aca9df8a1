"""Results: merge output and error files, land them atomically, write the retry remainder (floor 1)."""

"""The finance domain (issue 4): groundwork, not wired into the pipeline yet."""

"""The turbulence domain (issue 5): groundwork, not wired into the pipeline yet."""

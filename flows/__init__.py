"""Prefect flows: compose the stage functions of :mod:`tasks`; no stage logic lives here."""

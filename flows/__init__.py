"""Prefect flows: compose the stage functions of :mod:`tasks`; no stage logic lives here."""

# Imported first so its telemetry switches (tasks.OFFLINE_ENV) are in the environment before Prefect loads.
import tasks  # noqa: F401

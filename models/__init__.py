"""Torch modules, one file per architecture, reachable through a self-filling registry."""

from models.registry import build, get, list_models, register

__all__ = ["build", "get", "list_models", "register"]

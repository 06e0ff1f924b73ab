"""Synthetic data generators, one per domain, that write the formats real datasets ship in."""

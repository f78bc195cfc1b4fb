"""Tools for researchers: seeded order flows (more to come: recorders, replays, simulation)."""

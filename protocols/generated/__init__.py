"""Generated from protocols/trading.proto by `python -m protocols.generate`."""

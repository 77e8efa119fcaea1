"""Instrument drivers: one module per instrument, all on the shared serial transport."""

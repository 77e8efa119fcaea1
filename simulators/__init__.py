"""Wire-protocol simulators: each instrument on a pseudo-terminal, driven by the real drivers."""

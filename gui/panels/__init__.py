"""The GUI's panels, one module each; each takes the shared BenchState (and the Guard when it
has controls that change the bench)."""

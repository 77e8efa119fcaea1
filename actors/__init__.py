"""Actor implementations: instruments, pipeline, edge and scripting actors live below here."""

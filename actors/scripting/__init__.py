"""Scripts and scans in the daemon: Starlark evaluated in a worker thread, its builtins
calling the actors (see docs/scripting.md)."""

"""Scripts and scans in the daemon: Starlark evaluated in a worker process of its own, its
builtins calling the actors through the runner (see docs/scripting.md)."""

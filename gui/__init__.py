"""benchd-gui: the desktop GUI of the bench (PySide6 + pyqtgraph), a client in its own process.

It talks to the daemon only through the client library (``client``), so it runs on any machine
that can reach the daemon, and killing it never disturbs an acquisition. See docs/gui.md.
"""

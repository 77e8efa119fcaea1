"""``benchd-gui [--address HOST:PORT] [--token T] ...``: start the GUI.

``--screenshot FILE.png`` connects, waits until the live view has drawn a frame, saves the main
window to FILE.png and exits 0 (1 with the reason if no frame came within
``--screenshot-timeout`` seconds); without a display it renders offscreen.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

DEFAULT_ADDRESS = "127.0.0.1:50051"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchd-gui",
        description="The desktop GUI of a benchd daemon (docs/gui.md).",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("BENCHD_ADDRESS", DEFAULT_ADDRESS),
        help="the daemon, HOST:PORT (default $BENCHD_ADDRESS, else %(default)s)",
    )
    parser.add_argument("--token", help="bearer token (default $BENCHD_TOKEN)")
    parser.add_argument("--token-file", type=Path, help="read the token from this file")
    parser.add_argument(
        "--tls", metavar="CERT", help="use TLS; CERT: the daemon's certificate or CA"
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="do not start the camera's live view on connecting (it starts when the camera is"
        " idle and the token is an operator's)",
    )
    parser.add_argument("--preview-fps", type=float, default=30.0, help="live view rate limit")
    parser.add_argument("--preview-size", type=int, default=512, help="live view size limit (px)")
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="FILE.png",
        help="save the main window once the live view has a frame, then exit",
    )
    parser.add_argument("--screenshot-timeout", type=float, default=60.0, metavar="S")
    parser.add_argument("--log-level", default="INFO", help="of the GUI's log on stderr")
    args = parser.parse_args(argv)
    if args.token is None:
        if args.token_file is not None:
            try:
                args.token = args.token_file.read_text().strip()
            except OSError as error:
                parser.error(f"cannot read the token file {args.token_file}: {error.strerror}")
        else:
            args.token = os.environ.get("BENCHD_TOKEN") or None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    if args.screenshot and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from client import parse_address

    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        from . import theme
        from .connection import Connection
        from .window import MainWindow
    except ImportError as error:  # the daemon and client install without Qt
        print(
            f"benchd-gui: Qt or pyqtgraph is not installed ({error}); install the GUI extra:"
            " pip install 'benchd[gui]'",
            file=sys.stderr,
        )
        return 2

    try:
        parse_address(args.address)
    except ValueError as error:
        print(f"benchd-gui: {error}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("benchd-gui")
    theme.apply(app)
    connection = Connection(args.address, token=args.token, tls=args.tls)
    window = MainWindow(
        connection,
        live=not args.no_live,
        preview_fps=args.preview_fps,
        preview_size=args.preview_size,
    )
    window.show()
    connection.start()
    # Ctrl-C in the terminal closes the window cleanly: Qt's loop holds Python's signal
    # handlers until Python code runs, so a timer lets it run a few times a second.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    status = 0
    if args.screenshot is not None:
        target: Path = args.screenshot

        def save(_: object = None) -> None:
            nonlocal status
            window.camera.frame_shown.disconnect(save)
            QTimer.singleShot(300, finish)  # let the other panels draw their first data

        def finish() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if window.grab().save(str(target)):
                print(f"benchd-gui: saved {target}", file=sys.stderr)
            else:
                print(f"benchd-gui: could not write {target}", file=sys.stderr)
                set_status(1)
            window.close()

        def give_up() -> None:
            print(
                f"benchd-gui: no live-view frame within {args.screenshot_timeout:g} s (connection:"
                f" {connection.state}); is the camera acquiring, and is the token an operator's?",
                file=sys.stderr,
            )
            set_status(1)
            window.close()

        def set_status(value: int) -> None:
            nonlocal status
            status = value

        window.camera.frame_shown.connect(save)
        QTimer.singleShot(int(args.screenshot_timeout * 1000), give_up)
    app.exec()
    connection.close()
    return status

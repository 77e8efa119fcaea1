"""The look: Qt's Fusion style with a dark palette (camera software is read in dim labs), one
accent colour, and state colours used the same way in every panel.

Colours carry meaning only: green ready / in range, amber degraded / attention, red down /
latched / error, blue the accent for selection and live data. Text never relies on colour alone
(every state is also written out).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#1e2126"
SURFACE = "#262a30"
RAISED = "#2f343b"
BORDER = "#3b4149"
TEXT = "#dfe3e8"
MUTED = "#8d96a0"
ACCENT = "#4c9be8"
GREEN = "#3fb27f"
AMBER = "#e0a526"
RED = "#e5484d"
PLOT_BACKGROUND = "#15171a"

STATE_COLOURS = {
    "ready": GREEN,
    "degraded": AMBER,
    "down": RED,
    "latched": RED,
    "unknown": MUTED,
}

STYLESHEET = f"""
QMainWindow::separator {{ background: {BORDER}; width: 2px; height: 2px; }}
QDockWidget {{ titlebar-close-icon: none; font-weight: 600; }}
QDockWidget::title {{
    background: {RAISED}; padding: 5px 8px; border-bottom: 1px solid {BORDER};
    text-align: left;
}}
QGroupBox {{
    border: 1px solid {BORDER}; border-radius: 4px; margin-top: 14px; padding: 8px 6px 6px 6px;
}}
QGroupBox::title {{
    subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {MUTED}; font-weight: 600;
}}
QTabBar::tab {{
    background: {SURFACE}; color: {MUTED}; padding: 5px 12px; border: 1px solid {BORDER};
    border-bottom: none; border-top-left-radius: 3px; border-top-right-radius: 3px;
}}
QTabBar::tab:selected {{ background: {RAISED}; color: {TEXT}; border-top: 2px solid {ACCENT}; }}
QHeaderView::section {{
    background: {RAISED}; color: {MUTED}; padding: 4px 6px; border: none;
    border-right: 1px solid {BORDER}; border-bottom: 1px solid {BORDER};
}}
QTreeView, QTableView, QListView, QPlainTextEdit, QTextEdit {{
    background: {SURFACE}; alternate-background-color: #2a2e35; border: 1px solid {BORDER};
    selection-background-color: #2d4f73;
}}
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
    background: {BACKGROUND}; border: 1px solid {BORDER}; border-radius: 3px; padding: 3px 5px;
    min-height: 18px;
}}
QLineEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus {{
    border: 1px solid {ACCENT};
}}
QLineEdit[invalid="true"] {{ border: 1px solid {RED}; background: #3a2326; }}
QComboBox[invalid="true"], QSpinBox[invalid="true"], QPlainTextEdit[invalid="true"],
QListWidget[invalid="true"] {{ border: 1px solid {RED}; }}
QCheckBox[invalid="true"] {{ color: #ff8a8d; }}
QPushButton[role="icon"] {{ padding: 0; min-width: 22px; max-width: 22px; }}
QPushButton {{
    background: {RAISED}; border: 1px solid {BORDER}; border-radius: 3px; padding: 4px 12px;
    min-height: 18px;
}}
QPushButton:hover {{ border: 1px solid {ACCENT}; }}
QPushButton:pressed {{ background: {BORDER}; }}
QPushButton:checked {{ background: #2d4f73; border: 1px solid {ACCENT}; }}
QPushButton:disabled, QLineEdit:disabled, QComboBox:disabled, QDoubleSpinBox:disabled,
QSpinBox:disabled, QCheckBox:disabled {{ color: #5c636b; }}
QPushButton[role="primary"] {{ background: #2d5d8f; border: 1px solid {ACCENT}; }}
QPushButton[role="danger"] {{ background: #5a2326; border: 1px solid {RED}; }}
QPushButton#estop {{
    background: #c62828; color: white; font-weight: 800; font-size: 15px;
    border: 2px solid #ff6b6b; border-radius: 6px; padding: 8px 22px;
}}
QPushButton#estop:hover {{ background: #e53935; }}
QPushButton#estop:pressed {{ background: #8e1b1b; }}
QLabel[role="muted"] {{ color: {MUTED}; }}
QLabel[role="error"] {{ color: #ff8a8d; }}
QLabel[role="readout"] {{
    font-family: "DejaVu Sans Mono", monospace; font-size: 20px; font-weight: 600;
    color: {TEXT};
}}
QLabel[role="value"] {{ font-family: "DejaVu Sans Mono", monospace; }}
QLabel#latch[latched="true"] {{
    background: #5a2326; color: #ffb3b5; border: 1px solid {RED}; border-radius: 4px;
    padding: 5px 10px; font-weight: 700;
}}
QLabel#latch[latched="false"] {{
    background: #1f3a2e; color: #9be3bf; border: 1px solid {GREEN}; border-radius: 4px;
    padding: 5px 10px; font-weight: 600;
}}
QFrame#banner {{ background: #5a2326; border-bottom: 2px solid {RED}; }}
QFrame#banner QLabel {{ color: #ffd6d7; font-weight: 600; }}
QFrame#offline {{ background: #4a3a14; border-bottom: 2px solid {AMBER}; }}
QFrame#offline QLabel {{ color: #ffe7ad; font-weight: 600; }}
QProgressBar {{
    border: 1px solid {BORDER}; border-radius: 3px; background: {BACKGROUND}; text-align: center;
    min-height: 16px;
}}
QProgressBar::chunk {{ background: {ACCENT}; }}
QStatusBar {{ background: {RAISED}; color: {MUTED}; border-top: 1px solid {BORDER}; }}
QStatusBar QLabel {{ padding: 0 8px; }}
QToolBar {{ background: {RAISED}; border-bottom: 1px solid {BORDER}; spacing: 8px; padding: 4px; }}
QToolTip {{ background: {RAISED}; color: {TEXT}; border: 1px solid {BORDER}; padding: 4px; }}
"""


def apply(app: QApplication) -> None:
    """Fusion, the dark palette, the stylesheet, pyqtgraph's defaults to match."""
    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: SURFACE,
        QPalette.ColorRole.AlternateBase: RAISED,
        QPalette.ColorRole.ToolTipBase: RAISED,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: RAISED,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: RED,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: ACCENT,
        QPalette.ColorRole.PlaceholderText: MUTED,
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5c636b"))
    app.setPalette(palette)
    font = QFont("DejaVu Sans", 9)
    app.setFont(font)
    app.setStyleSheet(STYLESHEET)
    pg.setConfigOptions(background=PLOT_BACKGROUND, foreground=MUTED, antialias=True)


def monospace() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def state_colour(state: str) -> QColor:
    return QColor(STATE_COLOURS.get(state, MUTED))


def restyle(widget: object) -> None:
    """Re-apply the stylesheet after a dynamic property changed (Qt does not by itself)."""
    style = widget.style()  # type: ignore[attr-defined]
    style.unpolish(widget)
    style.polish(widget)


ALIGN_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter

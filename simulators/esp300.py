"""Newport ESP300 motion controller (three axes) on a pseudo-terminal.

Protocol facts: ../shared/reference/esp300.md. CR-terminated lines of ``[axis]MNEMONIC[params]``
separated by ``;`` (80 characters at most), case-insensitive; only queries answer (CR LF);
errors go silently into a 10-deep FIFO read with ``TE?``/``TB?``. Moves follow a trapezoidal
profile (VA, AC, AG) in trio time so ``TP?`` moves and ``MD?`` flips 0 -> 1 when done; ``ST``
decelerates, ``AB`` stops every axis at once; ``WS``/``WP`` hold the command queue. Each axis
has software travel limits (``SL``/``SR``, configurable per axis); a motor fault
(:meth:`Esp300Simulator.fault_next_move`: amplifier fault, following error) stops the axis
halfway, switches its motor off and queues the axis error.

Quirk modes (recorded on real units; off by default): ``cr_only`` / ``lf_only`` (replies end
in CR or LF instead of CR LF), ``mixed_line_ends`` (CR LF, CR and LF in turn), ``motor_off``
(power-up leaves every motor off: ``MO`` is needed before anything moves).

Run alone: ``python -m simulators.esp300``.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from ._pty import PtySimulator, default_link_dir, run_standalone

TICK_S = 400e-6  # servo cycle; TB? timestamps count these
LINE_LIMIT = 80
COMMAND = re.compile(r"^\s*(\d*)\s*([A-Za-z]{2})\s*(.*?)\s*$")

LINE_ENDS = {"cr_only": (b"\r",), "lf_only": (b"\n",), "mixed_line_ends": (b"\r\n", b"\r", b"\n")}
GENERAL_ERRORS = {
    0: "NO ERROR DETECTED",
    6: "COMMAND DOES NOT EXIST",
    7: "PARAMETER OUT OF RANGE",
    9: "AXIS NUMBER OUT OF RANGE",
    37: "AXIS NUMBER MISSING",
    38: "COMMAND PARAMETER MISSING",
}
AXIS_ERRORS = {
    1: "PARAMETER OUT OF RANGE",
    2: "AMPLIFIER FAULT DETECTED",
    3: "FOLLOWING ERROR THRESHOLD EXCEEDED",
    6: "POSITIVE SOFTWARE LIMIT DETECTED",
    7: "NEGATIVE SOFTWARE LIMIT DETECTED",
    10: "MAXIMUM VELOCITY EXCEEDED",
    11: "MAXIMUM ACCELERATION EXCEEDED",
    13: "MOTOR NOT ENABLED",
}
AXIS_COMMANDS = {"PA", "PR", "TP", "DP", "MD", "MO", "MF", "OR", "DH", "VA", "AC", "AG", "SL",
                 "SR", "SN", "ST", "WS", "WP", "MV"}  # fmt: skip


@dataclass
class Segment:
    """A constant-acceleration piece of a move profile."""

    start: float  # trio time
    duration: float
    position: float
    velocity: float
    acceleration: float

    def at(self, t: float) -> tuple[float, float]:
        dt = min(max(t - self.start, 0.0), self.duration)
        return (
            self.position + self.velocity * dt + 0.5 * self.acceleration * dt * dt,
            self.velocity + self.acceleration * dt,
        )


@dataclass
class Axis:
    number: int
    position: float = 0.0
    target: float = 0.0
    velocity: float = 5.0  # mm/s
    acceleration: float = 20.0  # mm/s²
    deceleration: float = 20.0
    max_velocity: float = 25.0
    max_acceleration: float = 200.0
    left_limit: float = -50.0
    right_limit: float = 50.0
    units: int = 2  # mm
    motor_on: bool = True
    homed: bool = False
    profile: list[Segment] = field(default_factory=list)
    fault: tuple[float, int] | None = None  # (when, axis error code): the motion faults then

    def state(self, now: float) -> tuple[float, float]:
        """(position, velocity) now; settles the profile when it has finished."""
        for segment in self.profile:
            if now < segment.start + segment.duration:
                return segment.at(now)
        if self.profile:
            self.position = self.target
            self.profile.clear()
        return self.position, 0.0

    def finish(self) -> float:
        """When the current profile ends (re-planned by ST/AB, so waiters re-check)."""
        return self.profile[-1].start + self.profile[-1].duration if self.profile else 0.0

    def moving(self, now: float) -> bool:
        self.state(now)
        return bool(self.profile)

    def plan(self, now: float, target: float) -> None:
        """A trapezoidal (or triangular) profile from rest to ``target``."""
        start, _ = self.state(now)
        distance = target - start
        self.target = target
        self.position = start
        if distance == 0:
            self.profile = []
            return
        sign = 1.0 if distance > 0 else -1.0
        v, a, d = self.velocity, self.acceleration, self.deceleration
        accelerating, braking = v * v / (2 * a), v * v / (2 * d)
        if accelerating + braking > abs(distance):  # never reaches cruise speed
            v = math.sqrt(2 * abs(distance) * a * d / (a + d))
            accelerating, braking = v * v / (2 * a), v * v / (2 * d)
        cruise = (abs(distance) - accelerating - braking) / v
        t1, t2 = v / a, v / d
        p1 = start + sign * accelerating
        p2 = p1 + sign * v * cruise
        self.profile = [
            Segment(now, t1, start, 0.0, sign * a),
            Segment(now + t1, cruise, p1, sign * v, 0.0),
            Segment(now + t1 + cruise, t2, p2, sign * v, -sign * d),
        ]

    def stop(self, now: float, *, immediately: bool) -> None:
        position, velocity = self.state(now)
        self.position = position
        if immediately or velocity == 0:
            self.target, self.profile = position, []
            return
        time_to_stop = abs(velocity) / self.deceleration
        sign = 1.0 if velocity > 0 else -1.0
        self.target = position + velocity * time_to_stop / 2
        self.profile = [Segment(now, time_to_stop, position, velocity, -sign * self.deceleration)]


class Esp300Simulator(PtySimulator):
    name = "esp300"
    command_terminator = b"\r"
    reply_terminator = b"\r\n"
    QUIRKS: ClassVar[Mapping[str, str]] = {
        "cr_only": "replies end in CR alone",
        "lf_only": "replies end in LF alone",
        "mixed_line_ends": "replies end in CR LF, CR and LF in turn",
        "motor_off": "power-up leaves every motor off (MO before any motion)",
    }

    def __init__(
        self,
        *,
        axes: int = 3,
        limits: Mapping[int, tuple[float, float]] | None = None,
        **kw: object,
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.axis_count = axes
        self.limits = dict(limits or {})
        self.version = "ESP300 Version 3.04 07/27/01"
        self._replies = 0
        self._faults: dict[int, int] = {}
        self.power_on()

    def power_on(self) -> None:
        self.axes = {n: Axis(n) for n in range(1, self.axis_count + 1)}
        for number, (left, right) in self.limits.items():
            self.axes[number].left_limit, self.axes[number].right_limit = left, right
        for axis in self.axes.values():
            axis.motor_on = not self.quirk("motor_off")
        self.errors: deque[tuple[int, int]] = deque(maxlen=10)
        self.aborts = 0

    def enable_quirk(self, name: str, on: bool = True) -> None:
        super().enable_quirk(name, on)
        if name == "motor_off" and on and hasattr(self, "axes"):
            for axis in self.axes.values():  # as if it had powered up that way
                axis.motor_on = False

    def fault_next_move(self, axis: int, code: int = 2) -> None:
        """The next move of ``axis`` faults halfway (2 amplifier fault, 3 following error):
        the axis stops there, its motor switches off, error ``axis*100+code`` is queued."""
        self._faults[axis] = code

    def frame(self, reply: bytes) -> bytes:
        for quirk, ends in LINE_ENDS.items():
            if self.quirk(quirk):
                end = ends[self._replies % len(ends)]
                self._replies += 1
                return reply.replace(b"\r\n", end) + end
        return reply + self.reply_terminator

    def _settle_faults(self, now: float) -> None:
        for axis in self.axes.values():
            if axis.fault is not None and now >= axis.fault[0]:
                when, code = axis.fault
                axis.fault = None
                position, _ = axis.state(when)
                axis.position = axis.target = position
                axis.profile = []
                axis.motor_on = False
                self._error(axis.number * 100 + code)

    # -- errors ----------------------------------------------------------------------------------

    def _error(self, code: int) -> None:
        ticks = int(trio.current_time() / TICK_S) % 2**31
        self.errors.append((code, ticks))

    @staticmethod
    def error_text(code: int) -> str:
        if code >= 100:
            return AXIS_ERRORS.get(code % 100, "UNKNOWN AXIS ERROR")
        return GENERAL_ERRORS.get(code, "UNKNOWN ERROR")

    # -- the protocol ----------------------------------------------------------------------------

    async def respond(self, command: bytes) -> bytes | None:
        await trio.lowlevel.checkpoint()
        line = command.decode("ascii", "replace")
        if len(line) > LINE_LIMIT:
            self._error(6)  # the real code for an over-long line is unconfirmed
            return None
        replies = []
        for part in line.split(";"):
            if part.strip():
                reply = await self._execute(part)
                if reply is not None:
                    replies.append(reply)
        return "\r\n".join(replies).encode() if replies else None

    async def _execute(self, text: str) -> str | None:
        match = COMMAND.match(text)
        if match is None:
            self._error(6)
            return None
        prefix, mnemonic, argument = match.group(1), match.group(2).upper(), match.group(3)
        now = trio.current_time()
        self._settle_faults(now)
        if mnemonic not in AXIS_COMMANDS:
            return self._controller_command(mnemonic, argument, now)
        if not prefix:
            self._error(37)
            return None
        axis = self.axes.get(int(prefix))
        if axis is None:
            self._error(9)
            return None
        return await self._axis_command(axis, mnemonic, argument, now)

    def _controller_command(self, mnemonic: str, argument: str, now: float) -> str | None:
        if mnemonic == "AB" and not argument:
            self.aborts += 1
            for axis in self.axes.values():
                axis.stop(now, immediately=True)
            return None
        if mnemonic == "VE" and argument == "?":
            return self.version
        if mnemonic == "TE" and argument == "?":
            return str(self.errors.popleft()[0] if self.errors else 0)
        if mnemonic == "TB" and argument == "?":
            code, ticks = self.errors.popleft() if self.errors else (0, int(now / TICK_S))
            return f"{code}, {ticks}, {self.error_text(code)}"
        self._error(6)
        return None

    async def _axis_command(
        self, axis: Axis, mnemonic: str, argument: str, now: float
    ) -> str | None:
        code = axis.number * 100
        if argument == "?":
            position, _ = axis.state(now)
            values = {
                "TP": f"{position:.5f}",
                "DP": f"{axis.target:.5f}",
                "MD": "0" if axis.moving(now) else "1",
                "MO": "1" if axis.motor_on else "0",
                "VA": f"{axis.velocity:.5f}",
                "AC": f"{axis.acceleration:.5f}",
                "AG": f"{axis.deceleration:.5f}",
                "SL": f"{axis.left_limit:.5f}",
                "SR": f"{axis.right_limit:.5f}",
                "SN": str(axis.units),
                "MV": "0" if axis.moving(now) else "1",
            }
            if mnemonic not in values:
                self._error(6)
                return None
            return values[mnemonic]
        if mnemonic in ("MO", "MF", "ST", "WS") and not argument:
            if mnemonic == "MO":
                axis.motor_on = True
            elif mnemonic == "MF":
                axis.stop(now, immediately=True)
                axis.motor_on = False
            elif mnemonic == "ST":
                axis.stop(now, immediately=False)
            else:
                while axis.moving(trio.current_time()):  # noqa: ASYNC110 (motion is a function of time)
                    await trio.sleep_until(min(axis.finish(), trio.current_time() + 0.01))
            return None
        if mnemonic == "OR":
            if not axis.motor_on:
                self._error(code + 13)
                return None
            axis.plan(now, 0.0)
            axis.homed = True
            self._arm_fault(axis)
            return None
        if mnemonic == "DH":
            axis.stop(now, immediately=True)
            axis.position = axis.target = float(argument) if argument else 0.0
            return None
        if not argument:
            self._error(38)
            return None
        try:
            value = float(argument)
        except ValueError:
            self._error(7)
            return None
        if mnemonic == "WP":  # hold the queue until the axis passes ``value`` or stops
            while axis.moving(trio.current_time()):
                position, velocity = axis.state(trio.current_time())
                if (position - value) * (1 if velocity > 0 else -1) >= 0:
                    break
                await trio.sleep_until(min(axis.finish(), trio.current_time() + 0.01))
            return None
        return self._set_axis(axis, mnemonic, value, now)

    def _arm_fault(self, axis: Axis) -> None:
        code = self._faults.pop(axis.number, None)
        if code is not None and axis.profile:
            start = axis.profile[0].start
            axis.fault = (start + (axis.finish() - start) / 2, code)

    def _set_axis(self, axis: Axis, mnemonic: str, value: float, now: float) -> str | None:
        code = axis.number * 100
        if mnemonic in ("PA", "PR"):
            if not axis.motor_on:
                self._error(code + 13)
                return None
            target = value if mnemonic == "PA" else axis.target + value
            if target > axis.right_limit:
                self._error(code + 6)
            elif target < axis.left_limit:
                self._error(code + 7)
            else:
                axis.plan(now, target)
                self._arm_fault(axis)
            return None
        if mnemonic == "VA":
            if not 0 < value <= axis.max_velocity:
                self._error(code + 10)
            else:
                axis.velocity = value
        elif mnemonic in ("AC", "AG"):
            if not 0 < value <= axis.max_acceleration:
                self._error(code + 11)
            elif mnemonic == "AC":
                axis.acceleration = value
            else:
                axis.deceleration = value
        elif mnemonic in ("SL", "SR"):
            if mnemonic == "SL":
                axis.left_limit = value
            else:
                axis.right_limit = value
        elif mnemonic == "SN":
            if value not in range(12):
                self._error(code + 1)
            else:
                axis.units = int(value)
        else:
            self._error(6)
        return None


if __name__ == "__main__":
    run_standalone(
        Esp300Simulator(link=default_link_dir() / "esp300"),
        "Newport ESP300 simulator (19200 8N1, CR in, CR LF out; RTS/CTS ignored by the pty)",
    )

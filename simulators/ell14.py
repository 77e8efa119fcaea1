"""Thorlabs ELL14 rotation mounts sharing one multidrop bus, on a pseudo-terminal.

Protocol facts: ../shared/reference/ell14.md. Host packets are ``<addr><cmd><data>`` with no
terminator: the module knows each command's data length (a CR or LF between packets clears a
partial one). Replies are ``<addr><CMD><data>`` + CR LF, upper-case hex, from the addressed
module only; absent addresses are silent. Positions are 32-bit two's complement hex pulses;
calibration comes from the ``in`` reply (the lab's units: 143360 pulses per 360°). Moves reply
``PO`` only when the motion ends, so each module moves on its own while the others keep
answering; a query to a module that is moving answers ``GS09`` (busy; configurable, the real
behaviour is unconfirmed). ``st`` stops a move. Errors latch until ``gs`` reads them.

The bus is noisy on real benches (recorded): bytes before the first frame after power-up, a
frame cut short and run into another unit's reply, a reply carrying another unit's address.
Quirk modes (off by default): ``power_up_noise`` (garbage before the first reply after a
power-up), ``noisy_bus`` (every 4th reply mangled in turn: leading garbage, cut to 3
characters, cut and run into another unit's frame, another unit's address), ``busy_silent``
(a module that is moving does not answer queries at all, instead of ``GS09``). For targeted
tests: :meth:`Ell14BusSimulator.replace_next_reply` (the exact bytes of a module's next reply),
``mechanical_timeouts`` (the next N moves end with ``GS02``).

Run alone: ``python -m simulators.ell14`` (modules 2, 3 and 8, as in the lab).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from ._pty import PtySimulator, default_link_dir, run_standalone

PULSES_PER_TURN = 143_360  # what the lab's units report in `in` (the manual says 262144)
TRAVEL_DEG = 360
MAX_SPEED_DEG_S = 430.0  # at 100 % velocity (unconfirmed spec)
DATA_LENGTH = {
    "ma": 8, "mr": 8, "ho": 1, "gp": 0, "gs": 0, "in": 0, "gj": 0, "sj": 8, "fw": 0,
    "bw": 0, "st": 0, "gv": 0, "sv": 2, "go": 0, "so": 8, "us": 0,
}  # fmt: skip
OK, MECHANICAL_TIMEOUT, COMMAND_ERROR, VALUE_OUT_OF_RANGE, BUSY = 0, 2, 3, 4, 9
NOISE = b"\x00\xfe\xff\x80"  # what a bus sees while modules power up
NOISY_EVERY = 4


def to_hex32(value: int) -> str:
    return f"{value & 0xFFFFFFFF:08X}"


def from_hex32(text: str) -> int:
    value = int(text, 16)
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass
class Module:
    address: str
    serial: str = "11400517"
    position: int = 0  # pulses
    velocity: int = 100  # percent
    jog_step: int = PULSES_PER_TURN // 360
    home_offset: int = 0
    error: int = OK
    moving: trio.CancelScope | None = None
    motion: tuple[float, int, int, float] = (0.0, 0, 0, 0.0)  # start, from, to, duration
    faults: dict[str, int] = field(default_factory=dict)

    def position_now(self) -> int:
        start, origin, target, duration = self.motion
        if self.moving is None or duration <= 0:
            return self.position
        fraction = min(1.0, (trio.current_time() - start) / duration)
        return round(origin + (target - origin) * fraction)


class Ell14BusSimulator(PtySimulator):
    name = "ell14"
    reply_terminator = b"\r\n"
    QUIRKS: ClassVar[Mapping[str, str]] = {
        "power_up_noise": "garbage bytes before the first reply after a power-up",
        "noisy_bus": "every 4th reply mangled: garbage before it, cut short, cut and run into"
        " another unit's frame, or another unit's address",
        "busy_silent": "a moving module ignores queries (instead of answering GS09)",
    }

    def __init__(
        self,
        *,
        addresses: tuple[str, ...] = ("2", "3", "8"),
        models: Mapping[str, int] | None = None,
        **kw: object,
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.addresses = addresses
        self.models = dict(models or {})  # address -> type code of the `in` reply (14: ELL14)
        self.busy_while_moving = True
        self.mechanical_timeouts = 0  # the next N moves end with GS02 instead of PO
        self._replacements: dict[str, list[bytes]] = {}
        self._replies = 0
        self.power_on()

    def power_on(self) -> None:
        self.modules = {a: Module(a, serial=f"1140051{i}") for i, a in enumerate(self.addresses)}
        self._nursery: trio.Nursery | None = None
        self._noise_pending = self.quirk("power_up_noise")

    def enable_quirk(self, name: str, on: bool = True) -> None:
        super().enable_quirk(name, on)
        if name == "power_up_noise" and hasattr(self, "modules"):
            self._noise_pending = on  # as if it had been so since power-up

    def replace_next_reply(self, address: str, raw: bytes) -> None:
        """Module ``address``'s next reply goes out as exactly ``raw`` (line end included or
        not): a cut frame ``3PO``, a bad one ``2POF``, two frames run together..."""
        self._replacements.setdefault(address, []).append(raw)

    # -- replies, with the bus's noise --------------------------------------------------------

    async def _emit(self, module: Module, text: str) -> None:
        """Put one reply of ``module`` on the bus (through the quirks)."""
        if self.faults.silent:
            return
        data = f"{module.address}{text}\r\n".encode()
        pending = self._replacements.get(module.address)
        if pending:
            data = pending.pop(0)
        elif self.quirk("noisy_bus"):
            self._replies += 1
            if self._replies % NOISY_EVERY == 0:
                data = self._mangle(module, data, self._replies // NOISY_EVERY)
        if self._noise_pending:
            self._noise_pending = False
            data = NOISE + data
        await self.send_unsolicited(data)

    def _mangle(self, module: Module, data: bytes, turn: int) -> bytes:
        others = [a for a in self.modules if a != module.address] or [module.address]
        other = self.modules[others[turn % len(others)]]
        match turn % 4:
            case 0:
                return NOISE + data
            case 1:
                return data[:3] + b"\r\n"
            case 2:
                return data[:6] + f"{other.address}GS{OK:02X}\r\n".encode()
            case _:
                return other.address.encode() + data[1:]

    async def _background(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery  # motions run here, one task per moving module
            await trio.sleep_forever()

    # -- framing: fixed-length packets, no terminator ----------------------------------------

    def next_command(self, buffer: bytearray) -> bytes | None:
        while buffer and buffer[0] in b"\r\n":
            del buffer[:1]  # CR/LF between packets: harmless, clears nothing here
        if len(buffer) < 3:
            return None
        mnemonic = buffer[1:3].decode("ascii", "replace")
        length = 3 + DATA_LENGTH.get(mnemonic, 0)
        if len(buffer) < length:
            if b"\r" in buffer or b"\n" in buffer:  # a CR clears a partial packet
                del buffer[: max(buffer.find(b"\r"), buffer.find(b"\n")) + 1]
            return None
        command = bytes(buffer[:length])
        del buffer[:length]
        return command

    # -- the protocol --------------------------------------------------------------------------

    async def respond(self, command: bytes) -> bytes | None:
        await trio.lowlevel.checkpoint()
        text = command.decode("ascii", "replace")
        module = self.modules.get(text[:1])
        if module is None:
            return None  # nobody at that address on the bus
        mnemonic, data = text[1:3], text[3:]
        reply = self._execute(module, mnemonic, data)
        if reply is not None:
            await self._emit(module, reply)
        return None  # replies go out through _emit (the bus's noise applies to all of them)

    def _execute(self, module: Module, mnemonic: str, data: str) -> str | None:
        if module.moving is not None and mnemonic != "st":
            busy = self.busy_while_moving and not self.quirk("busy_silent")
            return f"GS{BUSY:02X}" if busy else None
        if mnemonic == "in":
            # type (0E: ELL14), serial, year, firmware, hardware, travel, pulses per travel
            kind = self.models.get(module.address, 14)
            return f"IN{kind:02X}{module.serial}20231701{TRAVEL_DEG:04X}{PULSES_PER_TURN:08X}"
        if mnemonic == "gs":
            code, module.error = module.error, OK
            return f"GS{code:02X}"
        if mnemonic == "gp":
            return f"PO{to_hex32(module.position)}"
        if mnemonic == "gv":
            return f"GV{module.velocity:02X}"
        if mnemonic == "gj":
            return f"GJ{to_hex32(module.jog_step)}"
        if mnemonic == "go":
            return f"HO{to_hex32(module.home_offset)}"
        if mnemonic == "st":
            if module.moving is not None:
                module.position = module.position_now()
                module.moving.cancel()
                module.moving = None
            return f"GS{OK:02X}"
        try:
            return self._set(module, mnemonic, data)
        except ValueError:
            module.error = VALUE_OUT_OF_RANGE
            return f"GS{VALUE_OUT_OF_RANGE:02X}"

    def _set(self, module: Module, mnemonic: str, data: str) -> str | None:
        if mnemonic == "sv":
            value = int(data, 16)
            if not 0 < value <= 100:
                raise ValueError(data)
            module.velocity = value
        elif mnemonic == "sj":
            module.jog_step = from_hex32(data)
        elif mnemonic == "so":
            module.home_offset = from_hex32(data)
        elif mnemonic in ("ma", "mr", "ho", "fw", "bw"):
            target = {
                "ma": lambda: from_hex32(data),
                "mr": lambda: module.position + from_hex32(data),
                "ho": lambda: module.home_offset,
                "fw": lambda: module.position + module.jog_step,
                "bw": lambda: module.position - module.jog_step,
            }[mnemonic]()
            self._start_motion(module, target)
            return None  # the PO reply comes when the motion ends
        elif mnemonic != "us":  # `us` (save user data) is accepted; nothing else to model
            module.error = COMMAND_ERROR
            return f"GS{COMMAND_ERROR:02X}"
        return f"GS{OK:02X}"

    def _start_motion(self, module: Module, target: int) -> None:
        assert self._nursery is not None
        degrees = abs(target - module.position) * TRAVEL_DEG / PULSES_PER_TURN
        duration = degrees / (MAX_SPEED_DEG_S * module.velocity / 100)
        module.motion = (trio.current_time(), module.position, target, duration)
        module.moving = trio.CancelScope()
        self._nursery.start_soon(self._move, module, module.moving, target, duration)

    async def _move(
        self, module: Module, scope: trio.CancelScope, target: int, duration: float
    ) -> None:
        with scope:
            await trio.sleep(duration)
            module.position, module.moving = target, None
            if self.mechanical_timeouts > 0:  # real units sometimes end a move like this
                self.mechanical_timeouts -= 1
                module.error = MECHANICAL_TIMEOUT
                await self._emit(module, f"GS{MECHANICAL_TIMEOUT:02X}")
                return
            await self._emit(module, f"PO{to_hex32(target)}")


if __name__ == "__main__":
    run_standalone(
        Ell14BusSimulator(link=default_link_dir() / "ell14"),
        "Thorlabs ELL14 bus simulator, modules 2, 3, 8 (9600 8N1, packets without terminator)",
    )

"""The bench description: TOML (stdlib tomllib) into typed, validated objects.

Strict on purpose: an unknown key is an error (a typo like ``baudrte`` must not silently fall
back to a default on a real instrument), and every error names the file, the key path and the
reason — ``lab.toml: device[2].port: expected a string, got 3``.

This module knows the *shape* of a bench (devices with id, driver, port, options); what each
driver's options mean is checked by the bench builder (``supervisors/bench.py``), which reports
through the same ConfigError so the message format is the same everywhere.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import BenchError

DEVICE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: A bench's name: it names the camera's ring file (benchd-<name>-<camera>.ring).
BENCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
#: The most characters of a value from the file an error quotes (a key or value may be huge).
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """``repr`` of a value from the file for an error message, cut to SHOWN_CHARS characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}… ({len(text)} characters)"


BUILT_IN = "<built-in simulated bench>"


class ConfigError(BenchError):
    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    id: str
    driver: str
    port: str  # a serial device path, or "sim" for the built-in simulator
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""  # where it was declared, for error messages ("device[1]")

    @property
    def simulated(self) -> bool:
        return self.port == "sim"


def default_runs_directory() -> Path:
    return Path.home() / "benchd-runs"


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where runs go and how they are written (the ``[storage]`` table; all keys optional)."""

    directory: Path = field(default_factory=default_runs_directory)
    min_free_mb: float = 1024.0  # refuse, or end, a run below this much free disk space
    flush_interval: float = 1.0  # seconds; the most a crash can lose
    frame_queue: int = 128  # frames the writer may fall behind before frames are dropped
    ring_slots: int = 16  # frames in each camera's shared-memory ring (0: no ring)
    ring_directory: Path | None = None  # default /dev/shm (or /tmp without it)
    compression: str = "bitshuffle-lz4"  # a run's frames: "bitshuffle-lz4" or "none" (raw)
    #: Where clients may point ``recorder.directory`` (each of these and below); empty: the
    #: configured ``directory`` and below. An operator's token is not a licence to write run
    #: files, or have the recorder repair files, anywhere the daemon can write.
    allowed_directories: tuple[Path, ...] = ()


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_PRESETS_DIR = Path("~/.local/share/benchd/presets")
#: The largest request message the edge reads (its 5-byte length prefix is checked first).
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: The largest script source a client may send (CheckScript, UploadScript, StartScript).
DEFAULT_MAX_SCRIPT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """The ``[edge]`` table: where the gRPC edge listens and who may use it.

    Paths are resolved against the config file's directory. Without ``tokens_file`` every
    client is an operator, which is only allowed on a loopback address (see docs/edge.md).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    presets_dir: Path = DEFAULT_PRESETS_DIR
    disk_path: Path = Path("/")  # watched by the disk-low alert (where the data goes)
    disk_free_min_gb: float = 5.0
    writer_lag_max_frames: int = 64  # alert when the run writer is further behind than this
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # see docs/edge.md, "Limits"
    max_script_bytes: int = DEFAULT_MAX_SCRIPT_BYTES
    source: str = "<defaults>"  # where host and port came from, for error messages

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``, or ``:port`` for the default host) -> (host, port).

    Error handling: ValueError saying what is expected.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(
            f"{text!r} is not host:port (e.g. 127.0.0.1:50051, 0.0.0.0:50051, [::1]:50051)"
        )
    host = host.removeprefix("[").removesuffix("]") or DEFAULT_HOST
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class ScriptingConfig:
    """The script runner (the ``[scripting]`` table; docs/scripting.md)."""

    #: Steps a script may compute: check_cancelled calls, ~1000 bytecode instructions each.
    budget: int = 10_000
    #: Each script runs in a worker process capped at this much address space (RLIMIT_AS).
    memory_limit_mb: int = 1024
    #: ... and this much CPU time (RLIMIT_CPU; time waiting for builtins costs none).
    cpu_time_limit_s: int = 600
    #: An execution's output log keeps at most this many lines and this many KiB.
    output_lines: int = 10_000
    output_kib: int = 1024
    #: Worker processes kept started, so a script starts without waiting for an interpreter.
    pool_size: int = 1


@dataclass(frozen=True, slots=True)
class SuspenderConfig:
    """One bench-default suspender (``[[acquisition.suspender]]``): every plan is held while
    it trips, unless the plan opts out. The bench builder checks the values and the signal."""

    signal: str
    condition: str
    threshold: bool | int | float | str = 0.0
    resume: float | None = None
    settle: float = 0.0
    poll: float = 0.5
    key: str = ""  # where it was declared ("acquisition.suspender[0]")


@dataclass(frozen=True, slots=True)
class AcquisitionConfig:
    """The plan executor (the ``[acquisition]`` table; docs/acquisition.md)."""

    suspenders: tuple[SuspenderConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class PublishConfig:
    """Where finished runs are published (the ``[publish]`` table; docs/facility.md).

    ``tiled``: the Tiled server's URL ("" publishes nothing). Its API key is never in the file:
    it is read from the environment variable ``api_key_env`` when the config is loaded.
    """

    tiled: str = ""
    api_key_env: str = "BENCHD_TILED_API_KEY"
    api_key: str = field(default="", repr=False)
    queue: int = 1000  # runs waiting to be published, at most
    retry_max: float = 60.0  # s between attempts while the server is out, at most
    catch_up: bool = True  # at start, publish the directory's runs not yet published

    @property
    def enabled(self) -> bool:
        return bool(self.tiled)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    source: str  # the file it came from, for error messages
    name: str
    devices: tuple[DeviceConfig, ...]
    storage: StorageConfig = field(default_factory=StorageConfig)
    text: str = ""  # the file as written: every run's manifest carries it
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    scripting: ScriptingConfig = field(default_factory=ScriptingConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason)


def load_config(path: Path | str) -> BenchConfig:
    """Read and validate a bench file. Raises ConfigError (never KeyError/TypeError)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file ({exc.strerror})") from exc
    return parse_config(text, source)


def parse_config(text: str, source: str) -> BenchConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML ({exc})") from exc
    _only(
        data,
        {"bench", "device", "storage", "edge", "scripting", "acquisition", "publish"},
        "",
        source,
    )
    bench = data.get("bench", {})
    _expect(bench, dict, "bench", source, "a table")
    _only(bench, {"name"}, "bench", source)
    name = bench.get("name", Path(source).stem)
    _expect(name, str, "bench.name", source, "a string")
    if "name" in bench and not BENCH_NAME.match(name):  # (a file's own stem is its name)
        raise ConfigError(
            source,
            "bench.name",
            f"{shown(name)} is not allowed: 1 to 64 letters, digits, spaces, '.', '_', '-',"
            " starting with a letter or digit",
        )
    raw_devices = data.get("device", [])
    _expect(raw_devices, list, "device", source, "an array of [[device]] tables")
    if not raw_devices:
        raise ConfigError(source, "device", "no devices: add at least one [[device]] table")
    devices: list[DeviceConfig] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(raw_devices):
        key = f"device[{index}]"
        _expect(raw, dict, key, source, "a table")
        _only(raw, {"id", "driver", "port", "options"}, key, source)
        for required in ("id", "driver", "port"):
            if required not in raw:
                raise ConfigError(source, f"{key}.{required}", "missing (required)")
            _expect(raw[required], str, f"{key}.{required}", source, "a string")
        device_id = raw["id"]
        if not DEVICE_ID.match(device_id):
            raise ConfigError(
                source,
                f"{key}.id",
                f"{shown(device_id)} is not a valid id (1 to 64 lower-case letters, digits, _;"
                " a letter first)",
            )
        if device_id in seen:
            raise ConfigError(
                source, f"{key}.id", f"duplicate id {device_id!r} (also {seen[device_id]})"
            )
        seen[device_id] = key
        options = raw.get("options", {})
        _expect(options, dict, f"{key}.options", source, "a table")
        _no_nul(raw["port"], f"{key}.port", source)
        devices.append(DeviceConfig(device_id, raw["driver"], raw["port"], options, key))
    storage = _storage(data.get("storage", {}), source)
    return BenchConfig(
        source,
        name,
        tuple(devices),
        storage=storage,
        edge=_edge(data.get("edge", {}), source),
        scripting=_scripting(data.get("scripting", {}), source),
        acquisition=_acquisition(data.get("acquisition", {}), source),
        text=text,
        publish=_publish(data.get("publish", {}), source),
    )


PUBLISH_KEYS = {"tiled", "api_key_env", "queue", "retry_max", "catch_up"}
ENVIRONMENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _publish(table: object, source: str, environ: Mapping[str, str] | None = None) -> PublishConfig:
    """``[publish]``: the Tiled URL checked (http or https, a host), the API key read from the
    environment (a missing variable is an error: a publisher that cannot write would only
    fail later, quietly)."""
    _expect(table, dict, "publish", source, "a table")
    assert isinstance(table, dict)
    if "api_key" in table:
        raise ConfigError(
            source, "publish.api_key", "keys never go in the file: name a variable in api_key_env"
        )
    _only(table, PUBLISH_KEYS, "publish", source)
    url = table.get("tiled", "")
    _expect(url, str, "publish.tiled", source, 'a URL such as "http://tiled.lab:8000"')
    if url:
        match = re.fullmatch(r"(https?)://([^/:?#\s]+|\[[0-9A-Fa-f:]+\])(:\d{1,5})?(/[^\s]*)?", url)
        if match is None:
            raise ConfigError(
                source,
                "publish.tiled",
                f'{url[:80]!r} is not an http(s) URL with a host, e.g. "http://tiled.lab:8000"',
            )
    name = table.get("api_key_env", "BENCHD_TILED_API_KEY")
    _expect(name, str, "publish.api_key_env", source, "an environment variable's name")
    if name and not ENVIRONMENT_NAME.match(name):
        raise ConfigError(source, "publish.api_key_env", f"{name!r} is not a variable name")
    key = ""
    if url and name:
        key = (os.environ if environ is None else environ).get(name, "")
        if not key:
            raise ConfigError(
                source,
                "publish.api_key_env",
                f"the Tiled API key is read from the environment variable {name}, which is not"
                ' set (set it, or api_key_env = "" for a server that takes writes without a key)',
            )
    queue = table.get("queue", 1000)
    _expect(queue, int, "publish.queue", source, "an int (runs)")
    if not 1 <= queue <= 1_000_000:
        raise ConfigError(source, "publish.queue", f"{queue} is outside 1..1000000 runs")
    retry = table.get("retry_max", 60.0)
    if isinstance(retry, int) and not isinstance(retry, bool):
        retry = float(retry)
    _expect(retry, float, "publish.retry_max", source, "a number of seconds")
    if not 1.0 <= retry <= 3600.0:
        raise ConfigError(source, "publish.retry_max", f"{retry:g} is outside 1..3600 s")
    catch_up = table.get("catch_up", True)
    _expect(catch_up, bool, "publish.catch_up", source, "true or false")
    return PublishConfig(url, name, key, queue, retry, catch_up)


SUSPENDER_KEYS = {"signal", "condition", "threshold", "resume", "settle", "poll"}


def _acquisition(table: object, source: str) -> AcquisitionConfig:
    _expect(table, dict, "acquisition", source, "a table")
    assert isinstance(table, dict)
    _only(table, {"suspender"}, "acquisition", source)
    raw = table.get("suspender", [])
    _expect(raw, list, "acquisition.suspender", source, "an array of [[acquisition.suspender]]")
    suspenders = []
    for index, entry in enumerate(raw):
        key = f"acquisition.suspender[{index}]"
        _expect(entry, dict, key, source, "a table")
        _only(entry, SUSPENDER_KEYS, key, source)
        for required in ("signal", "condition"):
            if required not in entry:
                raise ConfigError(source, f"{key}.{required}", "missing (required)")
            _expect(entry[required], str, f"{key}.{required}", source, "a string")
        threshold = entry.get("threshold", 0.0)
        if not isinstance(threshold, bool | int | float | str):
            raise ConfigError(
                source,
                f"{key}.threshold",
                f"expected a number, true/false or text, got {shown(threshold)}",
            )
        numbers: dict[str, float] = {}
        for name in ("resume", "settle", "poll"):
            if name in entry:
                value = entry[name]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(
                        source, f"{key}.{name}", f"expected a number, got {shown(value)}"
                    )
                numbers[name] = float(value)
        suspenders.append(
            SuspenderConfig(
                entry["signal"],
                entry["condition"],
                threshold,
                numbers.get("resume"),
                numbers.get("settle", 0.0),
                numbers.get("poll", 0.5),
                key,
            )
        )
    return AcquisitionConfig(tuple(suspenders))


def _scripting(table: object, source: str) -> ScriptingConfig:
    _expect(table, dict, "scripting", source, "a table")
    assert isinstance(table, dict)
    _only(table, set(_SCRIPTING_INTS), "scripting", source)
    values: dict[str, int] = {}
    for name, (low, high) in _SCRIPTING_INTS.items():
        if name not in table:
            continue
        value = table[name]
        _expect(value, int, f"scripting.{name}", source, "an int")
        if not low <= value <= high:
            raise ConfigError(source, f"scripting.{name}", f"{value} is outside {low}..{high}")
        values[name] = value
    return ScriptingConfig(**values)


_SCRIPTING_INTS: dict[str, tuple[int, int]] = {
    "budget": (1, 1_000_000_000),
    "memory_limit_mb": (64, 1_048_576),
    "cpu_time_limit_s": (1, 7 * 86_400),
    "output_lines": (1, 1_000_000),
    "output_kib": (1, 1_048_576),
    "pool_size": (0, 8),
}


#: How a run's frames may be stored (actors.pipeline.nexus_file.Compression's values).
STORAGE_COMPRESSIONS = ("bitshuffle-lz4", "none")

_STORAGE_NUMBERS: dict[str, tuple[type, float, float]] = {
    "min_free_mb": (float, 0.0, 1e9),
    "flush_interval": (float, 0.05, 60.0),
    "frame_queue": (int, 2, 100_000),
    "ring_slots": (int, 0, 1024),
}


def _storage(table: object, source: str) -> StorageConfig:
    _expect(table, dict, "storage", source, "a table")
    assert isinstance(table, dict)
    _only(
        table,
        {"directory", "ring_directory", "compression", "allowed_directories", *_STORAGE_NUMBERS},
        "storage",
        source,
    )
    values: dict[str, Any] = {}
    if "compression" in table:
        value = table["compression"]
        if value not in STORAGE_COMPRESSIONS:
            raise ConfigError(
                source,
                "storage.compression",
                f"{str(value)[:40]!r} is not known; use one of {', '.join(STORAGE_COMPRESSIONS)}",
            )
        values["compression"] = value
    base = Path(source).parent if source != BUILT_IN else Path.cwd()
    for key in ("directory", "ring_directory"):
        if key in table:
            _expect(table[key], str, f"storage.{key}", source, "a path (string)")
            _no_nul(table[key], f"storage.{key}", source)
            path = Path(table[key]).expanduser()
            values[key] = path if path.is_absolute() else (base / path).resolve()
    if "allowed_directories" in table:
        values["allowed_directories"] = _allowed_directories(
            table["allowed_directories"], base, source
        )
    for key, (kind, low, high) in _STORAGE_NUMBERS.items():
        if key not in table:
            continue
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        _expect(
            value, kind, f"storage.{key}", source, f"a{'n' if kind is int else ''} {kind.__name__}"
        )
        if not low <= value <= high:
            raise ConfigError(source, f"storage.{key}", f"{value} is outside {low:g}..{high:g}")
        values[key] = value
    return StorageConfig(**values)


MAX_ALLOWED_DIRECTORIES = 32


def _allowed_directories(value: object, base: Path, source: str) -> tuple[Path, ...]:
    key = "storage.allowed_directories"
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ALLOWED_DIRECTORIES:
        raise ConfigError(
            source, key, f"a list of 1 to {MAX_ALLOWED_DIRECTORIES} paths (strings) is needed"
        )
    paths = []
    for index, item in enumerate(value):
        _expect(item, str, f"{key}[{index}]", source, "a path (string)")
        _no_nul(item, f"{key}[{index}]", source)
        path = Path(item).expanduser()
        paths.append(path if path.is_absolute() else (base / path).resolve())
    return tuple(paths)


EDGE_KEYS = {
    "listen",
    "tokens_file",
    "tls_cert",
    "tls_key",
    "presets_dir",
    "disk_path",
    "disk_free_min_gb",
    "writer_lag_max_frames",
    "max_request_bytes",
    "max_script_bytes",
}


def _edge(table: object, source: str) -> EdgeConfig:
    _expect(table, dict, "edge", source, "a table")
    assert isinstance(table, dict)
    _only(table, EDGE_KEYS, "edge", source)
    base = Path(source).parent if Path(source).is_file() else Path.cwd()
    paths: dict[str, Path] = {}
    for key in ("tokens_file", "tls_cert", "tls_key", "presets_dir", "disk_path"):
        if key in table:
            _expect(table[key], str, f"edge.{key}", source, "a path (string)")
            _no_nul(table[key], f"edge.{key}", source)
            paths[key] = base / Path(table[key]).expanduser()
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if "listen" in table:
        _expect(table["listen"], str, "edge.listen", source, "a string host:port")
        try:
            host, port = parse_listen(table["listen"])
        except ValueError as exc:
            raise ConfigError(source, "edge.listen", str(exc)) from None
    if ("tls_cert" in paths) != ("tls_key" in paths):
        given, missing = ("tls_cert", "tls_key") if "tls_cert" in paths else ("tls_key", "tls_cert")
        raise ConfigError(source, f"edge.{missing}", f"missing: edge.{given} needs it too")
    minimum = table.get("disk_free_min_gb", 5.0)
    if isinstance(minimum, int) and not isinstance(minimum, bool):
        minimum = float(minimum)
    _expect(minimum, float, "edge.disk_free_min_gb", source, "a number of GB")
    if not minimum >= 0:
        raise ConfigError(source, "edge.disk_free_min_gb", f"must be >= 0, got {minimum}")
    return EdgeConfig(
        host=host,
        port=port,
        tokens_file=paths.get("tokens_file"),
        tls_cert=paths.get("tls_cert"),
        tls_key=paths.get("tls_key"),
        presets_dir=paths.get("presets_dir", DEFAULT_PRESETS_DIR),
        disk_path=paths.get("disk_path", Path("/")),
        disk_free_min_gb=minimum,
        writer_lag_max_frames=_lag_limit(table, source),
        source=source,
        **_request_limits(table, source),
    )


def _lag_limit(table: Mapping[str, Any], source: str) -> int:
    value = table.get("writer_lag_max_frames", 64)
    _expect(value, int, "edge.writer_lag_max_frames", source, "an int (frames)")
    if value < 1:
        raise ConfigError(source, "edge.writer_lag_max_frames", f"must be >= 1, got {value}")
    return int(value)


#: Bounds of the request-size keys: below 64 KiB ordinary requests would be refused, above
#: 64 MiB one client could make the daemon hold that much per request.
MAX_REQUEST_BYTES_RANGE = (64 * 1024, 64 * 1024 * 1024)
MAX_SCRIPT_BYTES_RANGE = (1024, 16 * 1024 * 1024)


def _request_limits(table: Mapping[str, Any], source: str) -> dict[str, int]:
    """``max_request_bytes`` and ``max_script_bytes`` (ints of bytes, within their ranges)."""
    values = {}
    for key, default, (low, high) in (
        ("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES_RANGE),
        ("max_script_bytes", DEFAULT_MAX_SCRIPT_BYTES, MAX_SCRIPT_BYTES_RANGE),
    ):
        value = table.get(key, default)
        _expect(value, int, f"edge.{key}", source, "an int (bytes)")
        if not low <= value <= high:
            raise ConfigError(
                source, f"edge.{key}", f"{value} is outside {low}..{high} bytes (default {default})"
            )
        values[key] = int(value)
    return values


def _only(table: Mapping[str, Any], allowed: set[str], key: str, source: str) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            if len(where) > SHOWN_CHARS:
                where = f"{where[:SHOWN_CHARS]}… ({len(where)} characters)"
            raise ConfigError(
                source, where, f"unknown key; allowed here: {', '.join(sorted(allowed))}"
            )


def _expect(value: object, kind: type, key: str, source: str, described: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            source, key, f"expected {described}, got {type(value).__name__} {shown(value)}"
        )


def _no_nul(value: str, key: str, source: str) -> None:
    """A path or port with a NUL cannot be opened: say so now, not as a crash at first use."""
    if "\0" in value:
        raise ConfigError(source, key, f"{shown(value)} contains a NUL character")

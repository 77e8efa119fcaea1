"""Preset service: save, load, list, get and delete named snapshots of parameter values.

A preset holds the writable, non-hazardous parameters of the chosen devices (hazardous ones —
shutter, emission — are never part of a preset: loading one must not open a laser). Loading
validates every stored value against the parameters as they are *now* (limits and choices may
have changed since the save) before writing anything; the first value that no longer validates
is refused with INVALID_ARGUMENT naming the device and the parameter, and nothing is applied.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import preset_grpc
from benchd.v1 import preset_pb2 as pb
from runtime import (
    ActorRef,
    ActorState,
    BenchError,
    ListParameters,
    NotFoundError,
    ParameterInfo,
    SetParameter,
    SnapshotParameters,
    ValidationError,
)

from . import _convert as convert
from ._context import EdgeContext
from ._guard import receive
from ._preset_store import PresetStore, StoredPreset
from .errors import grpc_error, status_of


def info_message(preset: StoredPreset) -> pb.PresetInfo:
    return pb.PresetInfo(
        name=preset.name,
        description=preset.description,
        created=preset.created,
        devices=sorted(preset.values),
        parameters=preset.parameter_count,
    )


class PresetServicer(preset_grpc.PresetBase):
    def __init__(self, context: EdgeContext, store: PresetStore) -> None:
        self.ctx = context
        self.store = store

    def _refs(self, devices: list[str]) -> list[ActorRef]:
        return [self.ctx.ref(name) for name in devices or self.ctx.device_names()]

    async def SavePreset(self, stream: Stream[pb.SavePresetRequest, pb.PresetInfo]) -> None:
        request = await receive(stream)
        explicit = list(request.devices)
        if explicit:
            refs = self._refs(explicit)
        else:  # every ready device; a degraded one is left out rather than failing the save
            refs = [self.ctx.system.ref(n) for n in self.ctx.device_names()]
            refs = [r for r in refs if r.statistics().state is ActorState.RUNNING]
        store, bench = self.store, self.ctx.bench

        async def save(timeout: float) -> StoredPreset:
            values: dict[str, dict[str, Any]] = {}
            for ref in refs:
                infos: tuple[ParameterInfo, ...] = await ref.ask(ListParameters(), timeout=timeout)
                snapshot = await ref.ask(SnapshotParameters(), timeout=timeout)
                keep = {i.name for i in infos if not i.read_only and not i.hazardous}
                chosen = {n: s["value"] for n, s in snapshot.items() if n in keep}
                if chosen:
                    values[ref.name] = chosen
            preset = StoredPreset(request.name, request.description, time.time(), bench, values)
            await trio.to_thread.run_sync(lambda: store.save(preset, overwrite=request.overwrite))
            return preset

        preset = await self.ctx.ask(stream, save)
        await stream.send_message(info_message(preset))

    async def LoadPreset(self, stream: Stream[pb.LoadPresetRequest, pb.LoadPresetResponse]) -> None:
        request = await receive(stream)
        store, ctx = self.store, self.ctx
        only = set(request.devices)

        async def load(timeout: float) -> list[pb.PresetEntry]:
            preset = await trio.to_thread.run_sync(lambda: store.load(request.name))
            unknown = only - set(preset.values)
            if unknown:
                raise NotFoundError(
                    f"preset {preset.name!r} has no values for {', '.join(sorted(unknown))};"
                    f" it has: {', '.join(sorted(preset.values)) or 'none'}"
                )
            plan: list[tuple[ActorRef, str, Any]] = []
            for device, values in preset.values.items():
                if only and device not in only:
                    continue
                ref = ctx.ref(device)  # NOT_FOUND / UNAVAILABLE before anything is written
                infos = {i.name: i for i in await ref.ask(ListParameters(), timeout=timeout)}
                for name, value in values.items():
                    info = infos.get(name)
                    problem = (
                        f"no such parameter any more (parameters: {', '.join(infos)})"
                        if info is None
                        else convert.check_value(info, value)
                    )
                    if problem is not None:
                        raise ValidationError(
                            f"preset {preset.name!r} no longer validates at {device}.{name}:"
                            f" {problem}; nothing was applied"
                        )
                    plan.append((ref, name, value))
            applied: list[pb.PresetEntry] = []
            for ref, name, value in plan:
                try:
                    await ref.ask(SetParameter(name, value), timeout=timeout)
                except BenchError as exc:
                    done = ", ".join(f"{e.device}.{e.name}" for e in applied) or "none"
                    raise GRPCError(
                        status_of(exc),
                        f"preset {preset.name!r}: {ref.name}.{name} failed:"
                        f" {grpc_error(exc).message}; applied before it: {done}",
                    ) from exc
                applied.append(
                    pb.PresetEntry(device=ref.name, name=name, value=convert.to_value(value))
                )
            return applied

        applied = await self.ctx.ask(stream, load)
        await stream.send_message(pb.LoadPresetResponse(applied=applied))

    async def ListPresets(
        self, stream: Stream[pb.ListPresetsRequest, pb.ListPresetsResponse]
    ) -> None:
        await receive(stream)
        store = self.store

        async def listing(_: float) -> list[StoredPreset]:
            def read() -> list[StoredPreset]:
                found = []
                for name in store.names():
                    try:
                        found.append(store.load(name))
                    except ValidationError:
                        continue  # a damaged file is reported when it is loaded, by name
                return found

            return await trio.to_thread.run_sync(read)

        presets = await self.ctx.ask(stream, listing)
        await stream.send_message(
            pb.ListPresetsResponse(presets=[info_message(p) for p in presets])
        )

    async def GetPreset(self, stream: Stream[pb.PresetRequest, pb.PresetContents]) -> None:
        request = await receive(stream)
        store = self.store

        async def get(_: float) -> StoredPreset:
            return await trio.to_thread.run_sync(lambda: store.load(request.name))

        preset = await self.ctx.ask(stream, get)
        entries = [
            pb.PresetEntry(device=device, name=name, value=convert.to_value(value))
            for device, values in sorted(preset.values.items())
            for name, value in values.items()
        ]
        await stream.send_message(pb.PresetContents(info=info_message(preset), entries=entries))

    async def DeletePreset(self, stream: Stream[pb.PresetRequest, pb.DeletePresetResponse]) -> None:
        request = await receive(stream)
        store = self.store

        async def delete(_: float) -> None:
            await trio.to_thread.run_sync(lambda: store.delete(request.name))

        await self.ctx.ask(stream, delete)
        await stream.send_message(pb.DeletePresetResponse())

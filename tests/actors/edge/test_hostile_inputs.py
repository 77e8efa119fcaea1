"""Hostile inputs found by an audit of every field a client controls, each through the real edge.

Each test is one class of input that once crashed an actor (or the daemon), did work growing
faster than the input on the event loop, or let a client store without bound; it checks the
status, that the message says what was wrong and what is allowed, and that the daemon still
answers (an e-stop state query) with nothing restarted.
"""

from __future__ import annotations

import time

import pytest
import trio
from grpclib.const import Status

from actors.acquisition import executor
from actors.edge import _preset_store
from actors.scripting import runner
from benchd.v1 import (
    control_pb2,
    estop_pb2,
    hardware_pb2,
    plan_pb2,
    preset_pb2,
    scan_pb2,
    storage_pb2,
)

from .harness import Client
from .test_control import wait_done

#: 256 000 levels of nesting in a 256 KiB script: unary minus, and a left-leaning chain of +.
DEEP_SCRIPTS = ("-" * 200_000 + "1", "x = " + "1 + " * 60_000 + "1")


async def assert_responsive(client: Client, *actors: str) -> None:
    """The daemon answers, and none of ``actors`` has restarted."""
    state = await client.unary(
        client.estop.GetEmergencyStopState, estop_pb2.EmergencyStopStateRequest()
    )
    assert not state.latched
    for name in actors:
        device = await client.unary(
            client.hardware.GetDevice, hardware_pb2.DeviceRequest(device=name)
        )
        assert device.restarts == 0, (name, device)


async def test_deeply_nested_scripts_are_checked_without_killing_the_daemon(
    client: Client,
) -> None:
    # starlark-rust walks the syntax tree recursively: on an 8 MiB stack these killed the
    # daemon's process with SIGSEGV (CheckScript, UploadScript and StartScript parse them)
    for source in DEEP_SCRIPTS:
        checked = await client.unary(
            client.control.CheckScript, control_pb2.CheckScriptRequest(source=source)
        )
        assert not [p for p in checked.problems if p.severity == "error"], checked
        info = await client.unary(
            client.control.UploadScript, control_pb2.UploadScriptRequest(name="deep", source=source)
        )
        assert info.size == len(source)
    await assert_responsive(client, "scripts")


async def test_a_deeply_nested_script_runs_in_its_worker_without_crashing_it(
    client: Client,
) -> None:
    source = "x = " + "-" * 100_000 + "1\nprint(x)\n"
    started = await client.unary(
        client.control.StartScript, control_pb2.StartScriptRequest(source=source)
    )
    final = await wait_done(client, started.id)
    assert final.state == control_pb2.EXECUTION_STATE_COMPLETED, final
    output = await client.unary(client.control.GetOutput, control_pb2.OutputRequest(id=started.id))
    assert [line.split(" ", 1)[1] for line in output.lines] == ["1"]


async def test_scan_metadata_nested_too_deeply_is_a_problem_not_a_crash(client: Client) -> None:
    # json.loads raised RecursionError inside the plans actor, which then restarted
    for metadata in ("[" * 40_000, '{"a": ' * 33 + "1" + "}" * 33):
        plan = plan_pb2.Plan(
            count=plan_pb2.CountPath(num=1), read=["power_meter"], metadata_json=metadata
        )
        check = await client.unary(client.scan.ValidatePlan, plan)
        assert [(p.field, p.message) for p in check.problems] == [
            ("metadata", "nested more than 32 levels deep")
        ]
        message = await client.fails(
            Status.INVALID_ARGUMENT, client.scan.CreateScan, scan_pb2.CreateScanRequest(plan=plan)
        )
        assert "metadata: nested more than 32 levels deep" in message
    await assert_responsive(client, "plans")


async def test_an_adaptive_scan_whose_span_over_min_step_overflows_is_refused(
    client: Client,
) -> None:
    # |stop - start| / min_step = inf: math.floor raised OverflowError in the plans actor
    for start, stop in ((0.0, 1e300), (-1.7e308, 1.7e308)):
        plan = plan_pb2.Plan(
            adaptive=plan_pb2.AdaptivePath(
                axis="esp300.axis1",
                start=start,
                stop=stop,
                detector="power_meter",
                target_delta=1.0,
                min_step=1e-300,
                max_step=1.0,
            )
        )
        check = await client.unary(client.scan.ValidatePlan, plan)
        fields = {p.field: p.message for p in check.problems}
        assert fields["path.min_step"] == (
            "1e-300 allows more than 1000000 points; at most 1000000 (raise min_step or set"
            " max_points)"
        ), fields
    await assert_responsive(client, "plans")


async def test_json_depth_of_escaped_quotes_is_checked_in_linear_time(client: Client) -> None:
    # the string pattern backtracked over an unclosed string from every \" : 64 KiB took
    # tens of seconds of event loop (StartRun's metadata_json, StartScript's parameters_json)
    hostile = "[" * 33 + '"' + '\\"' * 32_000
    began = time.perf_counter()
    message = await client.fails(
        Status.INVALID_ARGUMENT,
        client.storage.StartRun,
        storage_pb2.StartRunRequest(name="deep", metadata_json=hostile),
    )
    assert message == "metadata_json is nested more than 32 levels deep"
    message = await client.fails(
        Status.INVALID_ARGUMENT,
        client.control.StartScript,
        control_pb2.StartScriptRequest(source="x = 1\n", parameters_json=hostile),
    )
    assert message == "parameters_json is nested more than 32 levels deep"
    # ~1 ms of work each now; a busy machine's scheduling cannot make it seconds
    assert time.perf_counter() - began < 3.0
    await assert_responsive(client, "recorder", "scripts")


async def test_uploaded_scripts_are_bounded_but_one_may_always_be_replaced(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "MAX_SCRIPTS", 3)
    for index in range(3):
        await client.unary(
            client.control.UploadScript,
            control_pb2.UploadScriptRequest(name=f"s{index}", source="x = 1\n"),
        )
    message = await client.fails(
        Status.RESOURCE_EXHAUSTED,
        client.control.UploadScript,
        control_pb2.UploadScriptRequest(name="s3", source="x = 1\n"),
    )
    assert message == (
        "3 scripts are uploaded (at most 3); upload under an existing name to replace it"
    )
    replaced = await client.unary(
        client.control.UploadScript, control_pb2.UploadScriptRequest(name="s1", source="y = 22\n")
    )
    assert replaced.size == 7
    listed = await client.unary(client.control.ListScripts, control_pb2.ListScriptsRequest())
    assert sorted(s.name for s in listed.scripts) == ["s0", "s1", "s2"]


async def test_executions_waiting_to_run_are_bounded(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "MAX_PENDING", 2)
    start = control_pb2.StartScriptRequest(source="sleep(60)\n")
    running = await client.unary(client.control.StartScript, start)
    with trio.fail_after(30):  # taken off the queue by a worker
        while running.state != control_pb2.EXECUTION_STATE_RUNNING:
            await trio.sleep(0.02)
            running = await client.unary(
                client.control.GetExecution, control_pb2.ExecutionRequest(id=running.id)
            )
    waiting = [await client.unary(client.control.StartScript, start) for _ in range(2)]
    message = await client.fails(Status.RESOURCE_EXHAUSTED, client.control.StartScript, start)
    assert message.startswith("2 executions are waiting to run (at most 2)"), message
    stop = control_pb2.StopExecutionRequest(id=waiting[0].id, force=True)
    await client.unary(client.control.StopExecution, stop)
    again = await client.unary(client.control.StartScript, start)  # room again
    for execution in (running, waiting[1], again):
        stop = control_pb2.StopExecutionRequest(id=execution.id, force=True)
        await client.unary(client.control.StopExecution, stop)
    for execution in (running, *waiting, again):
        await wait_done(client, execution.id)


async def test_plans_created_and_not_running_are_bounded(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "MAX_WAITING", 2)
    create = scan_pb2.CreateScanRequest(
        plan=plan_pb2.Plan(count=plan_pb2.CountPath(num=1), read=["power_meter"])
    )
    created = [await client.unary(client.scan.CreateScan, create) for _ in range(2)]
    message = await client.fails(Status.RESOURCE_EXHAUSTED, client.scan.CreateScan, create)
    assert message.startswith("2 plans are waiting to run (created or queued; at most 2)")
    await client.unary(client.scan.StopScan, scan_pb2.StopScanRequest(id=created[0].id))
    await client.unary(client.scan.CreateScan, create)  # room again


async def test_a_relative_move_too_large_for_the_wire_is_refused(client: Client) -> None:
    # 1e308 deg overflowed converting to pulses and crashed the mount's actor; 1e7 deg was
    # masked to 32 bits and sent as some other move
    for distance in (1.7e308, -1e7):
        message = await client.fails(
            Status.INVALID_ARGUMENT,
            client.hardware.MoveRelative,
            hardware_pb2.MoveRelativeRequest(device="ell14.2", distance=distance),
        )
        assert "is too large; at most ±5392676 deg at once" in message, message
    await assert_responsive(client, "ell14.2")


async def test_presets_are_bounded_but_one_may_always_be_overwritten(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_preset_store, "MAX_PRESETS", 2)
    for name in ("a", "b"):
        await client.unary(
            client.preset.SavePreset, preset_pb2.SavePresetRequest(name=name, devices=["maitai"])
        )
    message = await client.fails(
        Status.RESOURCE_EXHAUSTED,
        client.preset.SavePreset,
        preset_pb2.SavePresetRequest(name="c", devices=["maitai"]),
    )
    assert message == (
        "2 presets are saved (at most 2); delete one (DeletePreset) or save over an existing"
        " name with overwrite"
    )
    await client.unary(
        client.preset.SavePreset,
        preset_pb2.SavePresetRequest(name="a", devices=["maitai"], overwrite=True),
    )
    listed = await client.unary(client.preset.ListPresets, preset_pb2.ListPresetsRequest())
    assert [p.name for p in listed.presets] == ["a", "b"]


async def test_a_scripts_run_metadata_nested_too_deeply_is_refused_not_a_recorder_crash(
    client: Client,
) -> None:
    # json recursed over 900 nested lists and the recorder actor crashed (RecursionError)
    scripts = {
        "x = 1\nfor i in range(900):\n    x = [x]\nstart_run('deep', metadata={'a': x})\n": (
            "BuiltinError: recorder: run metadata is nested more than 32 levels deep"
        ),
        "start_run('listed', metadata=[1])\n": (
            "BuiltinError: start_run: metadata must be a dict, got list"
        ),
    }
    for source, error in scripts.items():
        started = await client.unary(
            client.control.StartScript, control_pb2.StartScriptRequest(source=source)
        )
        final = await wait_done(client, started.id)
        assert final.state == control_pb2.EXECUTION_STATE_ERROR, final
        assert final.error == error
    await assert_responsive(client, "recorder", "scripts")

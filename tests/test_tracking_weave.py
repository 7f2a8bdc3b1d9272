"""The project-owned SQLite trace server behind Weave's real client (weave==0.54.0 internal API)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

weave = pytest.importorskip("weave")

from weave.trace.context import weave_client_context  # noqa: E402
from weave.trace.weave_client import WeaveClient  # noqa: E402

from tools.tracking.weave_sqlite import SqliteTraceServer  # noqa: E402


@pytest.fixture
def client(tmp_path) -> Iterator[WeaveClient]:
    server = SqliteTraceServer(tmp_path / "traces.sqlite")
    weave_client = WeaveClient("local", "test-project", server, ensure_project_exists=False)
    previous = weave_client_context.get_weave_client()
    weave_client_context.set_weave_client_global(None)  # it only fills an empty slot
    weave_client_context.set_weave_client_global(weave_client)
    yield weave_client
    weave_client.flush()
    weave_client_context.set_weave_client_global(None)
    weave_client_context.set_weave_client_global(previous)
    server.close()


def test_methods_the_server_lacks_raise_attribute_error_so_weave_can_probe_them(tmp_path):
    server = SqliteTraceServer(tmp_path / "t.sqlite")
    for optional in ("get_feedback_processor", "call_processor", "otel_export", "projects_info"):
        assert not hasattr(server, optional)
    for needed in (
        "call_start",
        "call_end",
        "obj_create",
        "file_create",
        "calls_query_stream",
        "feedback_create",
    ):
        assert callable(getattr(server, needed))


def test_traced_ops_are_read_back_with_inputs_outputs_and_parents(client):
    @weave.op
    def double(x: int) -> int:
        return 2 * x

    @weave.op
    def pipeline(x: int) -> int:
        return double(x) + 1

    assert pipeline(5) == 11
    client.flush()
    calls = list(client.get_calls())
    by_name = {c.op_name.rsplit("/", 1)[-1].split(":")[0]: c for c in calls}
    assert set(by_name) == {"double", "pipeline"}
    assert by_name["double"].inputs["x"] == 5 and by_name["double"].output == 10
    assert by_name["double"].parent_id == by_name["pipeline"].id
    assert by_name["double"].trace_id == by_name["pipeline"].trace_id
    assert len(list(client.get_calls(filter={"trace_roots_only": True}))) == 1
    assert client.get_call(by_name["pipeline"].id).output == 11


def test_a_failing_op_is_recorded_with_its_exception(client):
    @weave.op
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        broken()
    client.flush()
    (call,) = list(client.get_calls())
    assert "boom" in call.exception
    assert call.summary["weave"]["status"] == "error"


def test_published_objects_and_datasets_round_trip(client):
    ref = weave.publish({"lr": 0.001, "dims": ["energy", "warmth"]}, name="hparams")
    assert ref.get() == {"lr": 0.001, "dims": ["energy", "warmth"]}
    dataset_ref = weave.publish(weave.Dataset(name="rows", rows=[{"q": "a", "t": 1}, {"q": "b", "t": 2}]))
    rows = list(dataset_ref.get().rows)
    assert [dict(r) for r in rows] == [{"q": "a", "t": 1}, {"q": "b", "t": 2}]


def test_query_expressions_filter_calls_server_side(client):
    @weave.op
    def score(value: int) -> int:
        return value

    for value in range(6):
        score(value)
    client.flush()
    query = {"$expr": {"$gt": [{"$getField": "output"}, {"$literal": 3}]}}
    assert sorted(c.output for c in client.get_calls(query=query)) == [4, 5]
    assert len(client.get_calls(query=query)) == 2


def test_the_tracking_weave_client_follows_the_configured_artifacts_dir(tmp_path, monkeypatch):
    from tools.tracking.weave_logger import weave_client

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "a"))
    first = weave_client()
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "b"))
    second = weave_client()
    assert first is not second
    assert weave_client_context.get_weave_client() is second
    assert second.server.db_path == tmp_path / "b" / "weave" / "traces.sqlite"

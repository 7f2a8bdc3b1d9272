"""Teachers and hard-case replay.

The Mistral teacher runs the real `mistralai` client against a scripted fake server on 127.0.0.1
that speaks the chat-completions wire format.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from tools.core.contracts import AugmentationSpec
from tools.core.schema import DIMS, SourceType
from tools.data.dataset import load_dataset, normalise_text
from tools.data.filters import filter_augmented
from tools.data.generator import content_key, parse_request_choice, request_values, to_target
from tools.data.replay import ReplayLeakError, hard_case_replay
from tools.data.teacher import MistralTeacher, OfflineTeacher, TeacherError, make_teacher


@pytest.fixture(scope="module")
def shipped():
    return load_dataset("shipped")


# --- offline teacher -----------------------------------------------------------------------------


def test_offline_teacher_returns_the_requested_count_of_distinct_natural_requests():
    teacher = OfflineTeacher()
    rows = teacher.generate(AugmentationSpec(), ["energy"], 50, seed=1)
    assert len(rows) == 50 == teacher.stats.returned
    assert len({normalise_text(r.request_text) for r in rows}) == 50
    assert all(r.origin == "teacher:offline" and r.source_type is SourceType.request_text for r in rows)


def test_offline_teacher_focus_dims_cover_every_requested_bucket():
    spec = AugmentationSpec(target_buckets={"nostalgia": [0, 10], "brightness": [0, 1, 9, 10]})
    teacher = OfflineTeacher()
    rows = teacher.generate(spec, ["nostalgia", "brightness"], 40, seed=3)
    assert {r.target.nostalgia for r in rows} == {0, 10}
    assert {r.target.brightness for r in rows} == {0, 1, 9, 10}
    assert teacher.stats.bucket_hit_rate == 1.0
    assert teacher.stats.bucket_coverage == {"nostalgia": 1.0, "brightness": 1.0}


def test_offline_teacher_spans_the_full_range_when_no_buckets_are_given():
    rows = OfflineTeacher().generate(AugmentationSpec(), ["acousticness", "complexity"], 66, seed=4)
    for dim in ("acousticness", "complexity"):
        assert {getattr(r.target, dim) for r in rows} == set(range(11))


def test_offline_teacher_targets_follow_the_lexicon_exactly():
    for row in OfflineTeacher().generate(AugmentationSpec(), ["warmth"], 30, seed=5):
        choice = parse_request_choice(row.request_text)
        assert choice is not None
        assert row.target == to_target(request_values(choice))


def test_offline_teacher_is_deterministic_for_a_seed():
    def texts(seed: int) -> list[str]:
        return [r.request_text for r in OfflineTeacher().generate(AugmentationSpec(), ["energy"], 20, seed)]

    assert texts(9) == texts(9)
    assert texts(9) != texts(10)


def test_offline_teacher_rows_pass_the_filters_with_zero_leakage(shipped):
    rows = OfflineTeacher().generate(AugmentationSpec(), ["energy", "nostalgia"], 200, seed=6)
    kept, report = filter_augmented(
        rows, train=shipped.train, protected={"valid": shipped.valid, "test": shipped.test}
    )
    assert report.leaked_against_protected == 0
    assert len(kept) >= 190


def test_teacher_rejects_unknown_focus_dims_and_out_of_range_buckets():
    with pytest.raises(ValueError, match="focus dims"):
        OfflineTeacher().generate(AugmentationSpec(), ["loudness"], 5, seed=0)
    with pytest.raises(ValueError, match="target buckets"):
        OfflineTeacher().generate(AugmentationSpec(target_buckets={"energy": [11]}), ["energy"], 5, seed=0)


def test_make_teacher_picks_offline_without_a_key_and_mistral_with_one(monkeypatch, shipped):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    assert make_teacher(SimpleNamespace(teacher="auto")).name == "offline"
    # the offline generator knows only the shipped catalogue: elsewhere auto means replay only
    assert make_teacher(SimpleNamespace(teacher="auto", data="real")) is None
    assert make_teacher(SimpleNamespace(teacher="none", data="shipped")) is None
    monkeypatch.setenv("MISTRAL_API_KEY", "dummy-key")
    config = SimpleNamespace(teacher="auto", mistral_model="m", mistral_server_url="http://127.0.0.1:9")
    assert make_teacher(config, train=shipped.train).name == "mistral"


# --- Mistral teacher over a fake server ----------------------------------------------------------


@dataclass
class FakeMistral:
    """Scripted replies, one per request: (status, content or None). Records every request body."""

    url: str
    script: list[tuple[int, str | None]]
    requests: list[dict] = field(default_factory=list)
    total_tokens: int = 300


def completion(content: str, total_tokens: int) -> dict:
    return {
        "id": "cmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-teacher",
        "usage": {
            "prompt_tokens": total_tokens - 100,
            "completion_tokens": 100,
            "total_tokens": total_tokens,
        },
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }


@pytest.fixture
def fake_mistral() -> Iterator[FakeMistral]:
    state = FakeMistral(url="", script=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "body": json.loads(body)})
            status, content = state.script.pop(0)
            if status == 200:
                payload = json.dumps(completion(content, state.total_tokens)).encode()
            else:
                payload = json.dumps(
                    {"object": "error", "message": "slow down", "code": str(status)}
                ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def pairs(*rows: tuple[str, list[int]]) -> str:
    return json.dumps({"pairs": [{"request_text": t, **dict(zip(DIMS, v, strict=True))} for t, v in rows]})


def mistral_teacher(fake: FakeMistral, shipped, **kwargs) -> MistralTeacher:
    options = {"retry_wait_s": (0.01, 0.05), "batch_size": 2, **kwargs}
    return MistralTeacher(
        train=shipped.train, api_key="dummy-key", server_url=fake.url, model="fake", **options
    )


GOOD = [
    ("A hushed harbour at dawn, just a cello and rain on the windows.", [2, 7, 3, 9, 3, 6]),
    ("Breakneck synth chase through a neon city, glitchy drums everywhere.", [10, 2, 7, 0, 8, 1]),
]


def test_mistral_teacher_parses_a_batch_through_the_real_client(fake_mistral, shipped):
    fake_mistral.script = [(200, pairs(*GOOD))]
    teacher = mistral_teacher(fake_mistral, shipped)
    spec = AugmentationSpec(target_buckets={"energy": [2, 10]})
    rows = teacher.generate(spec, ["energy"], 2, seed=7)
    assert [r.request_text for r in rows] == [t for t, _ in GOOD]
    assert [r.target.as_list() for r in rows] == [v for _, v in GOOD]
    assert all(r.origin == "teacher:mistral" for r in rows)
    assert teacher.stats.tokens_used == 300 and teacher.stats.calls == 1
    assert teacher.stats.bucket_coverage == {"energy": 1.0}
    request = fake_mistral.requests[0]
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == "fake" and body["temperature"] == 0.8 and body["random_seed"] == 8
    assert body["response_format"]["type"] == "json_schema"
    prompt = "\n".join(m["content"] for m in body["messages"])
    assert "energy" in prompt and "2, 10" in prompt


def test_mistral_teacher_shows_examples_from_train_only(fake_mistral, shipped):
    fake_mistral.script = [(200, pairs(*GOOD))]
    mistral_teacher(fake_mistral, shipped).generate(AugmentationSpec(), ["warmth"], 2, seed=1)
    prompt = fake_mistral.requests[0]["body"]["messages"][1]["content"]
    train_texts = [r.request_text.replace("\n", " ") for r in shipped.train]
    shown = [t for t in train_texts if t in prompt]
    assert len(shown) == 6
    assert not any(r.request_text.replace("\n", " ") in prompt for r in shipped.valid + shipped.test)


def test_mistral_teacher_retries_a_429_then_succeeds(fake_mistral, shipped):
    fake_mistral.script = [(429, None), (200, pairs(*GOOD))]
    teacher = mistral_teacher(fake_mistral, shipped)
    rows = teacher.generate(AugmentationSpec(), ["energy"], 2, seed=0)
    assert len(rows) == 2
    assert len(fake_mistral.requests) == 2 and teacher.stats.retries == 1


def test_mistral_teacher_gives_up_after_repeated_server_errors(fake_mistral, shipped):
    from mistralai.client.errors import SDKError

    fake_mistral.script = [(503, None)] * 3
    teacher = mistral_teacher(fake_mistral, shipped, max_attempts=3)
    with pytest.raises(TeacherError, match="no usable answer after 3 attempts") as err:
        teacher.generate(AugmentationSpec(), ["energy"], 2, seed=0)
    assert isinstance(err.value.__cause__, SDKError) and err.value.__cause__.status_code == 503
    assert len(fake_mistral.requests) == 3


def test_mistral_teacher_retries_transport_errors_then_gives_up_with_the_cause(shipped):
    import socket

    import httpx2

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    teacher = MistralTeacher(
        train=shipped.train,
        api_key="dummy-key",
        server_url=f"http://127.0.0.1:{port}",
        retry_wait_s=(0.01, 0.02),
    )
    with pytest.raises(TeacherError) as err:
        teacher.generate(AugmentationSpec(), ["energy"], 2, seed=0)
    assert isinstance(err.value.__cause__, httpx2.TransportError)
    assert teacher.stats.retries == teacher.max_attempts - 1


def test_mistral_teacher_rejects_bad_rows_and_keeps_the_good_ones(fake_mistral, shipped):
    bad = [("Too loud for the scale", [11, 5, 5, 5, 5, 5]), ("   ", [5] * 6), GOOD[0]]
    fake_mistral.script = [(200, pairs(GOOD[0], *bad)), (200, pairs(GOOD[1]))]
    teacher = mistral_teacher(fake_mistral, shipped, batch_size=4)
    rows = teacher.generate(AugmentationSpec(), ["energy"], 2, seed=0)
    assert [r.request_text for r in rows] == [GOOD[0][0], GOOD[1][0]]
    assert teacher.stats.rejected == {"target_out_of_range": 1, "empty_text": 1, "duplicate_in_response": 1}


def test_mistral_teacher_raises_a_clear_error_on_repeated_malformed_output(fake_mistral, shipped):
    fake_mistral.script = [(200, "Sure! Here are your pairs: energy=5"), (200, '{"pairs": "none"}')]
    teacher = mistral_teacher(fake_mistral, shipped, max_malformed=2)
    with pytest.raises(TeacherError, match="2 malformed responses in a row"):
        teacher.generate(AugmentationSpec(), ["energy"], 2, seed=0)
    assert teacher.stats.malformed_responses == 2


def test_mistral_teacher_recovers_from_one_malformed_response(fake_mistral, shipped):
    fake_mistral.script = [(200, "not json"), (200, pairs(*GOOD))]
    teacher = mistral_teacher(fake_mistral, shipped)
    assert len(teacher.generate(AugmentationSpec(), ["energy"], 2, seed=0)) == 2
    assert teacher.stats.malformed_responses == 1


def test_mistral_teacher_stops_when_the_token_budget_is_spent(fake_mistral, shipped):
    fake_mistral.total_tokens = 1000
    batch = pairs(*GOOD)
    more = pairs(("Sleepy lullaby for a paper boat drifting away.", [1, 8, 4, 8, 2, 7]), GOOD[1])
    fake_mistral.script = [(200, batch), (200, more)]
    teacher = mistral_teacher(fake_mistral, shipped, token_budget=1500)
    rows = teacher.generate(AugmentationSpec(), ["energy"], 10, seed=0)
    assert teacher.stats.budget_exhausted and teacher.stats.tokens_used == 2000
    assert len(fake_mistral.requests) == 2 and len(rows) == 3  # GOOD[1] repeated in the second batch


def test_mistral_teacher_needs_a_key(monkeypatch, shipped):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    with pytest.raises(TeacherError, match="api_key"):
        MistralTeacher(train=shipped.train)


# --- hard-case replay ----------------------------------------------------------------------------


def test_replay_refuses_rows_from_any_protected_split(shipped):
    failures = [shipped.train[0], shipped.test[3]]
    with pytest.raises(ReplayLeakError, match="test"):
        hard_case_replay(failures, 4, seed=0, protected={"valid": shipped.valid, "test": shipped.test})


def test_replay_paraphrases_train_failures_with_targets_and_content_unchanged(shipped):
    failures = shipped.train[:6]
    copies = hard_case_replay(failures, 12, seed=2, protected={"valid": shipped.valid, "test": shipped.test})
    assert len(copies) == 12
    originals = {r.request_text: r for r in shipped.train[:6]}
    by_content = {content_key(t): r for t, r in originals.items()}
    for copy in copies:
        assert copy.request_text not in originals
        source = by_content[content_key(copy.request_text)]
        assert copy.target == source.target and copy.source_type == source.source_type
        assert copy.origin.startswith("replay")
    assert len({normalise_text(c.request_text) for c in copies}) == 12


def test_replay_is_deterministic_and_rewords_foreign_text():
    failure = (
        "I want calm music for a quiet rooftop garden at night, with soft piano, for a cozy game.",
        [2] * 6,
    )
    first = hard_case_replay([failure], 3, seed=4, protected={})
    assert [c.request_text for c in first] == [
        c.request_text for c in hard_case_replay([failure], 3, seed=4, protected={})
    ]
    assert all(c.target.as_list() == [2] * 6 and c.request_text != failure[0] for c in first)
    assert all("rooftop garden" in c.request_text for c in first)


def test_replay_copies_pass_the_filters_against_train_but_never_leak(shipped):
    failures = shipped.train[:30]
    copies = hard_case_replay(failures, 45, seed=5, protected={"valid": shipped.valid, "test": shipped.test})
    kept, report = filter_augmented(
        copies, train=shipped.train, protected={"valid": shipped.valid, "test": shipped.test}
    )
    assert report.leaked_against_protected == 0
    assert report.dropped["train_near"] == 0 and report.dropped["batch_near"] == 0
    assert len(kept) + report.dropped["protected_near"] + report.dropped["protected_same_content"] == 45


def test_replay_never_produces_the_text_of_a_protected_row(shipped):
    """The paraphrases replay would write are made protected rows: it must find other wordings or none."""
    failures = shipped.train[:4]
    unprotected = hard_case_replay(failures, 8, seed=6, protected={})
    protected = {"valid": unprotected}
    copies = hard_case_replay(failures, 8, seed=6, protected=protected)
    protected_texts = {normalise_text(r.request_text) for r in unprotected}
    assert copies and not protected_texts & {normalise_text(c.request_text) for c in copies}

"""`python -m loop.publish`: after a night offline, send everything to W&B and Weave in one command.

What it sends to ENTITY/PROJECT (the W&B defaults of your key when not given):
- models: each student that was champion as a W&B model Artifact `kotone-student` (alias `cycle-N`), logged
  in the order it became champion (cycle 0's first), so the `champion` alias moves as it did and lands on
  the current champion (after `loop.run --rollback`, the restored one is logged again: W&B keeps one
  version per content and moves the alias back to it);
- registry: the current champion linked to the W&B Registry (`wandb-registry-model/kotone-student`, alias
  `champion`), where W&B users look for the production model;
- runs: every offline run under artifacts/wandb (the models run too), with `wandb sync`;
- evaluations: every EvalReport file (artifacts/loop/cycle_*/eval_*.json, artifacts/registry/.../
  eval_valid.json), re-logged as a Weave Evaluation, each call linked to its W&B run;
- traces: each cycle's agent transcript (agent_transcript.jsonl + mcp_eval_snapshot.json) as Weave calls,
  linked to the cycle's training run.

`--dry-run` prints the plan, one line per item, and sends nothing. What was sent is remembered in
artifacts/publish/ledger.json, so a second publish sends only what is new (`--force` sends all again).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tools.core import paths
from tools.core.atomic import atomic_write_json
from tools.core.records import RecordError, read_champion

Kind = Literal["model", "run", "registry", "evaluation", "trace"]
KINDS: tuple[Kind, ...] = ("model", "run", "registry", "evaluation", "trace")
MODEL_ARTIFACT = "kotone-student"
CHAMPION_ALIAS = "champion"
REGISTRY_COLLECTION = f"wandb-registry-model/{MODEL_ARTIFACT}"


class PublishError(RuntimeError):
    """Publishing cannot start or an item failed; the message says which and why."""


class Target(BaseModel):
    entity: str | None
    project: str

    def label(self) -> str:
        return f"{self.entity or '<your default entity>'}/{self.project}"


class Item(BaseModel):
    kind: Kind
    key: str
    line: str
    payload: dict[str, Any] = {}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# -- what there is to send -------------------------------------------------------------------------


def _offline_runs() -> list[Any]:
    from tools.tracking.wandb_records import RunLogIncomplete, find_run_logs, read_offline_run

    runs = []
    for path in find_run_logs(paths.wandb_dir()):
        try:
            runs.append(read_offline_run(path))
        except RunLogIncomplete:
            continue
    return sorted(runs, key=lambda run: run.start_time or "")


def _promotions() -> list[tuple[int, Path]]:
    """(cycle, registry entry folder) of every student that was champion, in the order it became champion,
    then the current champion again when `loop.run --rollback` restored an earlier one.

    A cycle promotes at most once and cycles run in order, so the order of promotion is the cycles' order
    (cycle 0's champion, history status `baseline`, first). A rollback writes no history line: only the
    champion pointer tells, so only the last one is seen (the alias ends where it must)."""
    from tools.core.contracts import ModelRecord

    promoted: dict[int, Path] = {}
    for record_path in sorted(paths.registry_dir().glob("cycle_*/**/record.json")):
        data = json.loads(record_path.read_text(encoding="utf-8"))
        record = ModelRecord.model_validate(data["record"])
        if data.get("promoted") and record.student_dir() is not None:
            promoted.setdefault(record.cycle, record_path.parent)
    order = sorted(promoted)
    champion = read_champion()
    if champion is not None and order and champion.cycle in promoted and champion.cycle != order[-1]:
        order.append(champion.cycle)  # a rollback: the alias moves back
    return [(cycle, promoted[cycle]) for cycle in order]


def _model_items() -> list[Item]:
    from tools.core.contracts import ModelRecord

    moves = _promotions()
    items = []
    for step, (cycle, entry) in enumerate(moves):
        record = ModelRecord.model_validate(json.loads((entry / "record.json").read_text())["record"])
        rollback = cycle in [c for c, _ in moves[:step]]
        aliases = [CHAMPION_ALIAS] if rollback else [f"cycle-{cycle}", CHAMPION_ALIAS]
        why = "rollback: champion again" if rollback else "first champion" if step == 0 else "promoted"
        items.append(
            Item(
                kind="model",
                key=f"{step}:{cycle}:{record.candidate}",
                line=f"{MODEL_ARTIFACT} from cycle {cycle} ({record.candidate}, {why}) aliases {', '.join(aliases)}",
                payload={
                    "cycle": cycle,
                    "student_dir": str(record.student_dir()),
                    "aliases": aliases,
                    "metadata": record.model_dump(mode="json"),
                },
            )
        )
    return items


def _registry_items() -> list[Item]:
    """The current champion's link in the W&B Registry (sent again when the champion changes)."""
    champion = read_champion()
    if champion is None or champion.student_dir() is None:
        return []  # the untouched base model has no files to log
    return [
        Item(
            kind="registry",
            key=f"{champion.cycle}:{champion.candidate}",
            line=f"{MODEL_ARTIFACT}:{CHAMPION_ALIAS} (cycle {champion.cycle}, {champion.candidate}) "
            f"linked to {REGISTRY_COLLECTION} as {CHAMPION_ALIAS}",
            payload={"cycle": champion.cycle, "candidate": champion.candidate},
        )
    ]


def _run_items(runs: list[Any]) -> list[Item]:
    return [
        Item(
            kind="run",
            key=run.run_id,
            line=f"{run.path.parent.name}  {run.name} ({run.job_type or 'run'}, {run.group or 'no group'})",
            payload={"dir": str(run.path.parent)},
        )
        for run in runs
    ]


def _report_files() -> list[Path]:
    files = sorted(paths.loop_dir().glob("cycle_*/eval_*.json"))
    files += sorted(paths.registry_dir().glob("cycle_*/**/eval_valid.json"))
    return files


def _matching_run(report: Any, runs: list[Any]) -> Any | None:
    """The eval run that logged `report` (same predictor, decoder, data, rows and MAE)."""
    for run in runs:
        summary = run.summary
        if (
            run.job_type == "eval"
            and run.config.get("predictor") == report.predictor
            and run.config.get("decoder") == report.decoder
            and run.config.get("data_hash") == report.data_hash
            and summary.get("eval/n_rows") == report.n_rows
            and summary.get("eval/vector_mae") == report.vector_mae
        ):
            return run
    return None


def _evaluation_items(runs: list[Any]) -> list[Item]:
    from tools.evaluation.metrics import EvalReport

    items, seen = [], set()
    for path in _report_files():
        digest = _digest(path)
        if digest in seen:
            continue  # the same report copied into the registry
        seen.add(digest)
        try:
            report = EvalReport.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError:
            continue  # an eval_*.json that is not an EvalReport (gate, summaries)
        if not report.rows:
            continue
        run = _matching_run(report, runs)
        name = run.name if run else report.predictor
        link = f"linked to run {run.run_id}" if run else "no W&B run found"
        items.append(
            Item(
                kind="evaluation",
                key=digest,
                line=f"{name}  {report.n_rows} rows, vector_mae {report.vector_mae}  ({link})  "
                f"{path.relative_to(paths.artifacts_dir())}",
                payload={
                    "path": str(path),
                    "name": name,
                    "run_id": run.run_id if run else None,
                    "config": {
                        k: v
                        for k, v in (run.config if run else {}).items()
                        if isinstance(v, str | int | float | bool)
                    },
                },
            )
        )
    return items


def _cycle_run_id(cycle: int, runs: list[Any]) -> str | None:
    """The cycle's training run (else any run of its group): what the agent's trace links to."""
    group = [run for run in runs if run.group == f"cycle_{cycle}"]
    linked = [run for run in group if run.job_type == "train"] or group
    return linked[0].run_id if linked else None


def _trace_items(runs: list[Any]) -> list[Item]:
    from agent.transcript import SNAPSHOT_FILE, TRANSCRIPT_FILE, cycle_of_folder

    items = []
    for transcript in sorted(paths.loop_dir().glob(f"cycle_*/{TRANSCRIPT_FILE}")):
        cycle = cycle_of_folder(transcript.parent)
        if cycle is None:
            continue
        snapshot = transcript.parent / SNAPSHOT_FILE
        events = sum(1 for line in transcript.read_text(encoding="utf-8").splitlines() if line.strip())
        run_id = _cycle_run_id(cycle, runs)
        link = f"linked to run {run_id}" if run_id else "no W&B run of the cycle"
        items.append(
            Item(
                kind="trace",
                key=_digest(transcript),
                line=f"cycle {cycle} agent: {events} events  ({link})",
                payload={
                    "cycle": cycle,
                    "transcript": str(transcript),
                    "snapshot": str(snapshot) if snapshot.is_file() else None,
                    "run_id": run_id,
                },
            )
        )
    return items


def build_plan(kinds: tuple[Kind, ...] = KINDS) -> list[Item]:
    runs = _offline_runs()
    builders: dict[Kind, Callable[[], list[Item]]] = {
        "model": _model_items,
        "run": lambda: _run_items(runs),
        "registry": _registry_items,
        "evaluation": lambda: _evaluation_items(runs),
        "trace": lambda: _trace_items(runs),
    }
    return [item for kind in KINDS if kind in kinds for item in builders[kind]()]


# -- the ledger of what was sent ---------------------------------------------------------------------


class Ledger(BaseModel):
    sent: dict[str, list[str]] = {}  # "entity/project" -> ["kind:key", ...]

    @staticmethod
    def path() -> Path:
        return paths.artifacts_dir() / "publish" / "ledger.json"

    @classmethod
    def load(cls) -> Ledger:
        path = cls.path()
        return cls.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else cls()

    def has(self, target: Target, item: Item) -> bool:
        return f"{item.kind}:{item.key}" in self.sent.get(target.label(), [])

    def add(self, target: Target, item: Item) -> None:
        self.sent.setdefault(target.label(), []).append(f"{item.kind}:{item.key}")
        atomic_write_json(self.path(), self)


# -- sending ---------------------------------------------------------------------------------------


def sync_command(run_dirs: list[str], target: Target) -> list[str]:
    """`wandb sync` for these offline run folders (no entity: W&B files them under the key's default)."""
    command = [sys.executable, "-m", "wandb", "sync", "--project", target.project]
    if target.entity:
        command += ["--entity", target.entity]
    return [*command, *run_dirs]


def log_models(items: list[Item], target: Target) -> Item | None:
    """The model artifacts, logged in order in one offline run (uploaded by the runs' `wandb sync`);
    returns that run as an item to sync."""
    if not items:
        return None
    import wandb

    from tools.tracking.env import configure_tracking

    saved = dict(os.environ)
    settings = configure_tracking()  # offline into artifacts/wandb; the environment is restored after
    try:
        return _log_models_offline(wandb, items, target, settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _log_models_offline(wandb: Any, items: list[Item], target: Target, settings: Any) -> Item:
    from tools.tracking.wandb_logger import finish_run

    run = wandb.init(
        project=target.project,
        entity=target.entity,
        name="publish-models",
        job_type="publish",
        mode="offline",
        dir=str(settings.wandb_dir),
        reinit="create_new",
        settings=wandb.Settings(console="off", save_code=False, x_disable_stats=True, x_disable_meta=True),
    )
    for item in items:
        artifact = wandb.Artifact(MODEL_ARTIFACT, type="model", metadata=item.payload["metadata"])
        artifact.add_dir(item.payload["student_dir"])
        run.log_artifact(artifact, aliases=item.payload["aliases"])
    finish_run(run, settings)
    log_path = Path(run.settings.sync_file)
    return Item(
        kind="run",
        key=run.id,
        line=f"{log_path.parent.name}  publish-models",
        payload={"dir": str(log_path.parent)},
    )


def sync_runs(items: list[Item], target: Target) -> None:
    if not items:
        return
    result = subprocess.run(
        sync_command([i.payload["dir"] for i in items], target), capture_output=True, text=True
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PublishError(f"wandb sync failed (exit {result.returncode}): {tail[0]}")


def champion_source(target: Target, entity: str) -> str:
    """The logged champion version, as W&B's public API names it."""
    return f"{target.entity or entity}/{target.project}/{MODEL_ARTIFACT}:{CHAMPION_ALIAS}"


def link_in_registry(item: Item, target: Target) -> None:
    """Link the uploaded champion version to the W&B Registry collection (W&B links need a server: an
    offline run cannot link, so this runs after `wandb sync` uploaded the artifact)."""
    import wandb

    api = wandb.Api()
    try:
        artifact = api.artifact(champion_source(target, api.default_entity), type="model")
        artifact.link(REGISTRY_COLLECTION, aliases=[CHAMPION_ALIAS])
    except (wandb.errors.CommError, ValueError) as exc:
        raise PublishError(f"linking the champion to {REGISTRY_COLLECTION} failed: {exc}") from exc


def relog_evaluation(item: Item, client: Any) -> None:
    from tools.evaluation.metrics import EvalReport
    from tools.tracking.weave_logger import trace_evaluation

    report = EvalReport.model_validate_json(Path(item.payload["path"]).read_text(encoding="utf-8"))
    trace_evaluation(
        report,
        name=item.payload["name"],
        attributes={**item.payload["config"], "published_from": "EvalReport file"},
        wb_run_id=item.payload["run_id"],
        client=client,
    )


def relog_trace(item: Item, client: Any) -> None:
    from agent.transcript import ToolCallRecord, TranscriptEvent
    from agent.weave_trace import trace_events

    lines = Path(item.payload["transcript"]).read_text(encoding="utf-8").splitlines()
    events = [TranscriptEvent.model_validate_json(line) for line in lines if line.strip()]
    calls: list[ToolCallRecord] = []
    if item.payload["snapshot"]:
        snapshot = json.loads(Path(item.payload["snapshot"]).read_text(encoding="utf-8"))
        calls = [ToolCallRecord.model_validate(call) for call in snapshot.get("calls", [])]
    trace_events(client, events, calls, cycle=item.payload["cycle"], wb_run_id=item.payload["run_id"])


def online_weave_client(target: Target) -> Any:
    import weave

    return weave.init(f"{target.entity}/{target.project}" if target.entity else target.project)


def publish(
    target: Target,
    plan: list[Item],
    *,
    weave_client: Callable[[], Any] | None = None,
    sync: Callable[[list[Item], Target], None] = sync_runs,
    link: Callable[[Item, Target], None] = link_in_registry,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Send the plan's items not sent yet; returns how many were sent. Stops at the first failure (the
    ledger keeps what went through, so running it again continues)."""
    ledger = Ledger.load()
    todo = [item for item in plan if force or not ledger.has(target, item)]
    by_kind = {kind: [i for i in todo if i.kind == kind] for kind in KINDS}
    models_run = log_models(by_kind["model"], target)
    for item in by_kind["model"]:
        ledger.add(target, item)
        say(f"sent  model       {item.line}")
    runs = by_kind["run"] + ([models_run] if models_run else [])
    sync(runs, target)
    for item in runs:
        ledger.add(target, item)
        say(f"sent  run         {item.line}")
    for item in by_kind["registry"]:
        link(item, target)
        ledger.add(target, item)
        say(f"sent  registry    {item.line}")
    if by_kind["evaluation"] or by_kind["trace"]:
        client = (weave_client or (lambda: online_weave_client(target)))()
        for item in by_kind["evaluation"]:
            relog_evaluation(item, client)
            ledger.add(target, item)
            say(f"sent  evaluation  {item.line}")
        for item in by_kind["trace"]:
            relog_trace(item, client)
            ledger.add(target, item)
            say(f"sent  trace       {item.line}")
    return len(todo) + (1 if models_run else 0)


def _has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def main(argv: list[str] | None = None) -> int:
    from tools.tracking.env import tracking_settings

    settings = tracking_settings()
    from tools.core.cli import command_parser

    parser = command_parser(
        "loop.publish",
        "kotone-publish",
        description="Send the offline runs, evaluations, agent traces and promoted models to W&B / Weave.",
        epilog="Needs WANDB_API_KEY (or `wandb login`) unless --dry-run. KOTONE_WANDB_ENTITY / "
        "KOTONE_WANDB_PROJECT (then WANDB_ENTITY / WANDB_PROJECT) give the defaults of --entity / "
        "--project; KOTONE_ARTIFACTS the artifacts root.",
    )
    parser.add_argument("--entity", default=settings.wandb_entity, help="W&B entity (default: your key's)")
    parser.add_argument(
        "--project", default=settings.project, help=f"W&B project (default {settings.project})"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
    parser.add_argument("--force", action="store_true", help="send again what the ledger says was sent")
    parser.add_argument(
        "--only", choices=KINDS, action="append", help="send only this kind (repeat for several)"
    )
    args = parser.parse_args(argv)
    target = Target(entity=args.entity, project=args.project)
    try:
        plan = build_plan(tuple(args.only or KINDS))
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ledger = Ledger.load()
    print(f"publish to {target.label()}: {len(plan)} item(s)")
    for item in plan:
        state = "sent before" if ledger.has(target, item) and not args.force else "to send"
        print(f"{item.kind:<10}  {state:<11}  {item.line}")
    if args.dry_run or not plan:
        return 0
    if not _has_key():
        print(
            "error: publishing needs a W&B key: export WANDB_API_KEY=... (or run `wandb login`)",
            file=sys.stderr,
        )
        return 2
    try:
        sent = publish(target, plan, force=args.force)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published {sent} item(s) to {target.label()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""False promotions on a plateau: cycles whose candidates differ from the champion only by their seed.

    python scripts/plateau.py --data real --cycles 20          # ~45 LM trainings as Ray tasks (2 at a time)

Every candidate here is the same recipe as the champion (the LM regression student, one seed: the noisiest
candidate the loop could meet; the loop's own candidates average 3 seeds), so any promotion is a false one.
Each cycle gates K=2 seed variants against the champion exactly as the loop does (`gate_candidates`: Holm over
K, beats_baselines), then re-confirms a winner with one more seed. Beside it, last round's gate (one candidate
per cycle, uncorrected, no confirmation) on the same predictions. A promotion makes that seed the champion,
as in the loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loop.gate import GateConfig, gate_candidates, run_gate  # noqa: E402
from tools.core.contracts import HParams, ModelRecord  # noqa: E402
from tools.data.dataset import load_dataset  # noqa: E402
from tools.evaluation.harness import evaluate, evaluate_baselines  # noqa: E402
from tools.evaluation.metrics import EvalReport  # noqa: E402

HPARAMS = HParams(learning_rate=5e-4, lora_r=16, lora_alpha=32, epochs=3.0, batch_size=16)


def train_seed(data_spec: str, base_model: str, options: dict, seed: int, scratch: str) -> list[list[float]]:
    """One LM regression student with `seed`, trained on train; its predictions on valid."""
    from tools.student.interface import load_student, train_student

    data = load_dataset(data_spec)
    folder = Path(scratch) / f"seed{seed}"
    train_student(
        "regression",
        HPARAMS,
        data.train,
        base_spec=base_model,
        output_dir=folder,
        seed=seed,
        options=options,
        progress=False,
    )
    student = load_student(base_model, folder)
    return [
        p.values for p in student.predict_batch([r.request_text for r in data.valid], decoder="regression")
    ]


def report_of(values: list[list[float]], name: str, data) -> EvalReport:
    from tools.core.schema import Prediction

    predictions = {
        r.request_text: Prediction(values=v, json_valid=True) for r, v in zip(data.valid, values, strict=True)
    }
    return evaluate(
        lambda texts: [predictions[t] for t in texts],
        data.valid,
        predictor=name,
        decoder="regression",
        dataset=f"{data.name}/valid",
        progress=False,
    )


def champion_record(name: str, report: EvalReport) -> ModelRecord:
    from loop.registry import metric_summary

    return ModelRecord(
        cycle=0,
        candidate=name,
        student_path=None,
        decoder="regression",
        base_model="-",
        metrics=metric_summary(report),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="real")
    parser.add_argument("--base-model", default="bundled")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--student-options", type=json.loads, default={}, help="e.g. '{\"layers_kept\": 2}'")
    args = parser.parse_args(argv)

    from loop.parallel import TaskFailure, run_tasks

    data = load_dataset(args.data)
    # seed 0: champion; 1..2C: the cycles' candidates; 2C+1..3C: confirmations
    seeds = list(range(3 * args.cycles + 1))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plateau-") as scratch:
        results = run_tasks(
            train_seed,
            {str(s): (args.data, args.base_model, args.student_options, s, scratch) for s in seeds},
            cpus_per_task=1,
            on_done=lambda key, _: print(
                f"seed {key} trained ({time.perf_counter() - began:.0f} s)", flush=True
            ),
        )
    failed = [k for k, v in results.items() if isinstance(v, TaskFailure)]
    if failed:
        print(f"failed seeds: {failed}: {[results[k] for k in failed]}")
        return 1
    reports = {int(k): report_of(v, f"seed{k}", data) for k, v in results.items()}
    baselines = {
        r.predictor: r for r in evaluate_baselines(data.train, data.valid, dataset=f"{data.name}/valid")
    }
    spread = np.array([r.vector_mae for r in reports.values()])
    print(
        f"\nvalid MAE over {len(spread)} seeds: {spread.min():.3f} .. {spread.max():.3f} (sd {spread.std():.3f}); "
        f"ridge {baselines['tfidf-ridge'].vector_mae:.3f}, median {baselines['train-median'].vector_mae:.3f}"
    )

    config = GateConfig()
    old = GateConfig(holm=False, confirm=False)
    champion_new = champion_old = 0
    promotions_new: list[int] = []
    promotions_old: list[int] = []
    for cycle in range(1, args.cycles + 1):
        a, b = 2 * cycle - 1, 2 * cycle
        candidates = {f"seed{a}": reports[a], f"seed{b}": reports[b]}
        gate = gate_candidates(
            champion_record(f"seed{champion_new}", reports[champion_new]),
            reports[champion_new],
            candidates,
            dict.fromkeys(candidates, ["energy"]),
            config,
            baselines,
        )
        if gate.winner is not None:
            confirm = run_gate(
                reports[champion_new], reports[2 * args.cycles + cycle], ["energy"], config, baselines
            )
            if confirm.promoted:
                promotions_new.append(cycle)
                champion_new = int(gate.winner.removeprefix("seed"))
        # last round's loop: one candidate per cycle, uncorrected, beats the constant only, no confirmation
        last_round = run_gate(
            reports[champion_old], reports[a], ["energy"], old, {"train-median": baselines["train-median"]}
        )
        if last_round.promoted:
            promotions_old.append(cycle)
            champion_old = a
        print(
            f"cycle {cycle:2d}: gate winner {gate.winner or '-':7s} -> {'PROMOTED' if cycle in promotions_new else 'kept'}; "
            f"last round's gate: {'PROMOTED' if cycle in promotions_old else 'kept'}",
            flush=True,
        )
    print(
        f"\nfalse promotions in {args.cycles} seed-only cycles: this gate {len(promotions_new)} {promotions_new}; "
        f"last round's gate {len(promotions_old)} {promotions_old}; wall {time.perf_counter() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

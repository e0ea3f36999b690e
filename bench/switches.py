"""Evaluate one trained checkpoint under every inference-time switch, side by side.

    python bench/switches.py --checkpoint runs/ablation/metal_plate_full

Reference `teacher` vs `expert` shows what training the teacher added; GII gate
`gated` vs `open` (s = 1, all teacher detail, anomalies can leak) vs `closed`
(s = 0, no teacher detail) shows what the gate does. No retraining, same weights.
Results: bench/results/switches_<checkpoint name>.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_info, machine_line  # noqa: E402

from rdexpert.checkpoint.folder import load_checkpoint  # noqa: E402
from rdexpert.checkpoint.io import write_json  # noqa: E402
from rdexpert.evaluation.evaluate import evaluate_split  # noqa: E402
from rdexpert.evaluation.metrics import metrics_table  # noqa: E402
from rdexpert.model import GATES, REFERENCES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", default=None, help="default: the dataset the checkpoint was trained on")
    parser.add_argument("--category", default=None)
    args = parser.parse_args()

    model, config = load_checkpoint(args.checkpoint)
    root = args.data_root or config["dataset"]["root"]
    category = args.category or config["dataset"]["category"]
    gates = GATES if model.variant.skip == "gated" else ("gated",)
    rows = {}
    for reference in REFERENCES:
        for gate in gates:
            result = evaluate_split(model, root, category, reference=reference, gate=gate, progress=False)
            rows[f"reference={reference}, gate={gate}"] = result.metrics
            print(f"reference={reference} gate={gate}", {k: round(v, 4) for k, v in result.metrics.items()}, flush=True)
    name = Path(args.checkpoint).name
    table = (
        f"# Inference-time switches: {name} ({config['model']['variant']}, {category})\n\n"
        f"Machine: {machine_line()}.\n"
        f"Command: `python bench/switches.py {' '.join(sys.argv[1:])}`\n\n" + metrics_table(rows, "switches")
    )
    print(table)
    (HERE / "results" / f"switches_{name}.md").write_text(table)
    write_json(HERE / "results" / f"switches_{name}.json", {"machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()

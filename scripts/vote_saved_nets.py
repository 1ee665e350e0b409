"""The plurality vote of saved networks (``models/<id>/seed<N>/``), the same vote as the
``ensemble`` stage's (without its checks that each net is the run's and trained to its last
epoch), and the test errors of every sub-ensemble of three or more of them.

For nets trained outside one DVC run, e.g. the book profile's ch6-dropout seeds trained a
pair at a time with ``python -m pipeline.train``, each pair in its own output folder:

    python scripts/vote_saved_nets.py --out vote.json run-a/models/ch6-dropout/seed1 \\
        run-a/models/ch6-dropout/seed2 run-b/models/ch6-dropout/seed3 ...

Sub-ensembles are named by the nets' positions on the command line (``1+2+3``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from pipeline.atomic import check_writable, write_json
from pipeline.console import run_command
from pipeline.nn import load_model, score_vote
from pipeline.params import conf_data
from pipeline.vote import predictions, vote_scores


def vote(model_dirs: list[Path], prepared_dir: Path) -> dict:
    nets = [load_model(d).network for d in model_dirs]
    predicted = predictions(nets, prepared_dir)
    result: dict = {"members": [str(d) for d in model_dirs], **vote_scores(predicted, nets[0].classes)}
    votes, test = predicted["test"]
    result["test_errors_by_subset"] = {
        "+".join(str(i + 1) for i in subset):
            score_vote([votes[i] for i in subset], test.y, n_classes=nets[0].classes)["errors"]
        for k in range(3, len(nets) + 1) for subset in itertools.combinations(range(len(nets)), k)
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", nargs="+", type=Path, help="saved nets (seed folders)")
    prepared = conf_data()["prepared_dir"]
    parser.add_argument("--prepared", type=Path, default=Path(prepared),
                        help=f"folder of validation.npz and test.npz (default: {prepared})")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if len(args.model_dirs) < 2:
        parser.error("a vote needs at least 2 nets")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; give the JSON file's name")
    check_writable(args.out.parent)  # before the nets are read and scored
    result = vote(args.model_dirs, args.prepared)
    write_json(args.out, result)
    print(f"vote of {len(args.model_dirs)}: test {result['test_accuracy']:.2%} "
          f"({result['test_errors']} errors); sub-ensembles: {result['test_errors_by_subset']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("vote_saved_nets", main))

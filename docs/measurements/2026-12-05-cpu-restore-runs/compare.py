"""Each run of a store filled by `python -m pipeline.restore_runs` beside the run it was first
logged as: name, params, summary metrics, the per-epoch validation and test accuracy, artifact
names, status. Usage: python compare.py <first store .db> <restored store .db>"""

import sys

from mlflow.tracking import MlflowClient


def runs(client):
    experiment = client.get_experiment_by_name("nielsen-mnist")
    return client.search_runs([experiment.experiment_id], max_results=5000)


first, restored = (MlflowClient(f"sqlite:///{path}") for path in sys.argv[1:3])
copies = runs(restored)
differ = []
for copy in copies:
    run = first.get_run(copy.data.tags["restored_from"])
    a, b = run.info.run_id, copy.info.run_id
    checks = {
        "name": (run.info.run_name, copy.info.run_name),
        "status": (run.info.status, copy.info.status),
        "params": (run.data.params, copy.data.params),
        "metrics": (run.data.metrics, copy.data.metrics),
        "artifacts": tuple(sorted(x.path for x in c.list_artifacts(i)) for c, i in ((first, a), (restored, b))),
    }
    for key in ("validation_accuracy", "test_accuracy"):
        checks[key] = tuple([(m.step, m.value) for m in c.get_metric_history(i, key)]
                            for c, i in ((first, a), (restored, b)))
    differ += [f"{copy.info.run_name} ({a}): {k}" for k, (x, y) in checks.items() if x != y]
print(f"{len(copies)} restored runs compared with their first runs; {len(differ)} differences")
print("\n".join(differ))

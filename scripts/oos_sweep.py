"""Developer tool: CLINC150 dev in-scope accuracy vs OOS recall for several threshold rejection rates.

python scripts/oos_sweep.py   (features cached by scripts/nlu_experiment.py)
"""

import json
import sys

import numpy as np

sys.argv = [
    "x",
    "--train",
    "../shared/data/clinc150/train.jsonl",
    "--test",
    "../shared/data/clinc150/dev.jsonl",
]
sys.path.insert(0, "scripts")
from pathlib import Path  # noqa: E402

from nlu_experiment import featurize  # noqa: E402

from nlu_components.fusion import FusionClassifierModel, FusionConfig  # noqa: E402

tr_x, tr_y = featurize(Path(sys.argv[2]), (2, 4, 6))
dv_x, dv_y = featurize(Path(sys.argv[4]), (2, 4, 6))
dv_y = np.array(dv_y)
QS = (0.02, 0.01, 0.0075, 0.005, 0.0025)
for views in (("encoder", "syntax"), ("encoder",)):
    for q in QS:
        cfg = FusionConfig(views=views, refit_on_all=False, oos_in_scope_rejection=q)
        if q == QS[0]:
            model = FusionClassifierModel.train(tr_x, tr_y, cfg)
            y, ti, vi = model.split(tr_y)
        else:
            model.config = cfg
            model.calibrate(
                [tr_x[i] for i in vi], y[vi], [tr_x[i] for i in ti if model.in_scope(y)[i]]
            )
        preds = model.predict(dv_x, explain=False)
        raw = np.array([model.labels[int(p.probabilities.argmax())] for p in preds])
        final = np.array(
            [
                (
                    "out_of_scope"
                    if (label != "out_of_scope" and model.is_out_of_scope(p))
                    else label
                )
                for label, p in zip(raw, preds)
            ]
        )
        ins = dv_y != "out_of_scope"
        print(
            json.dumps(
                {
                    "views": views,
                    "q": q,
                    "raw_in_scope": round(float((raw[ins] == dv_y[ins]).mean()) * 100, 2),
                    "in_scope": round(float((final[ins] == dv_y[ins]).mean()) * 100, 2),
                    "oos_recall": round(float((final[~ins] == "out_of_scope").mean()) * 100, 2),
                    "raw_oos_recall": round(float((raw[~ins] == "out_of_scope").mean()) * 100, 2),
                }
            ),
            flush=True,
        )

"""The `stroke-*` commands: each a Hydra application composed from `conf/` (stroke.conf).

| command | module | config |
| --- | --- | --- |
| stroke-train | train | conf/train.yaml |
| stroke-eval | eval | conf/eval.yaml |
| stroke-predict | predict | conf/predict.yaml |
| stroke-export | export | conf/export.yaml |
| stroke-synth | synth | conf/synth.yaml |
| stroke-cv | cv | conf/cv.yaml |
| stroke-runs | runs | conf/runs.yaml |
| stroke-bench | bench | conf/bench.yaml |

`python -m stroke.cli.<module> key=value ...` is the same as the command.
"""

"""Merge finished per-seed binding runs into one study folder, without training or loading the
encoder: the tables, report, figures and results page of ``run_study``'s last step, rebuilt
from each unit's eval.json, mech.json and train.json.

One process per seed is how the comparison runs on two cores (a study folder has one writer):

    OMP_NUM_THREADS=1 python -m interp.binding experiments/binding_cpu.toml --set seeds=[0] --out runs/binding-cpu-b-s0
    OMP_NUM_THREADS=1 python -m interp.binding experiments/binding_cpu.toml --set seeds=[1] --out runs/binding-cpu-b-s1
    python scripts/binding_merge.py runs/binding-cpu 0,1 text,noise-text,image-text,noise-image-text runs/binding-cpu-b-s0 runs/binding-cpu-b-s1

Arguments: OUT SEEDS REGIMES SRC... [KEY=VALUE ...] (one source folder per seed, in the order of
SEEDS; then the overrides the sources ran with, TOML values, as ``--set`` takes them). The merged
config is experiments/binding_cpu.toml with those seeds, regimes and overrides; the report carries
no wall time (the seeds ran side by side). figures/out/binding-cpu was merged from runs made
before the preset's curriculum stage: ``train.stages=[]``.
"""
import sys
import tomllib
from pathlib import Path
from interp.io import environment, read_json, write_json
from interp.studies.binding.config import load_config
from interp.studies.binding.report import headline_text
from interp.studies.binding.run import finish_study

if {"-h", "--help"} & set(sys.argv[1:]):
    print("usage: python scripts/binding_merge.py OUT SEEDS REGIMES SRC... [KEY=VALUE ...]\n" + __doc__)
    sys.exit(0)
if len(sys.argv) < 5 or len([a for a in sys.argv[4:] if "=" not in a]) != len(sys.argv[2].split(",")):
    print("binding_merge: need OUT SEEDS REGIMES and one SRC folder per seed (python scripts/binding_merge.py --help)",
          file=sys.stderr)
    sys.exit(2)
out = Path(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]; regimes = sys.argv[3].split(",")
srcs = [a for a in sys.argv[4:] if "=" not in a]  # per-seed source folders (runs/binding-cpu-b-s0 ...)
overrides = {k: tomllib.loads(f"v = {v}")["v"] for k, _, v in (a.partition("=") for a in sys.argv[4:] if "=" in a)}
cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "binding_cpu.toml",
                  {**overrides, "seeds": tuple(seeds), "regimes": tuple(regimes), "out_dir": str(out)})
out.mkdir(parents=True, exist_ok=True)
results = []
for seed, src in zip(seeds, srcs):
    for unit in ["phase1"] + regimes:
        d = Path(src) / f"seed{seed}" / unit
        ev, mech, log = read_json(d / "eval.json"), read_json(d / "mech.json"), read_json(d / "train.json")
        res = {"eval": ev, "mech": mech, "history": log.get("history", [])}
        if (d / "selection.json").exists():  # train.continuation_lrs: the candidates and the rate kept
            res["selection"] = read_json(d / "selection.json")
        results.append(res)
write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "result_hash": cfg.result_hash,
                                 "source": "merged from " + ", ".join(srcs) + " (python -m interp.binding experiments/binding_cpu.toml --set seeds=[k] --out SRC, one process per seed)",
                                 "environment": environment()})
summary = finish_study(cfg, results, out, seconds=None, progress=False)
print(headline_text(summary, cfg.to_dict()))
print(summary["page"])

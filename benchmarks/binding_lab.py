"""Binding lab: which levers make the brief's HF Llama decoder learn content-addressed retrieval
(issue 15, docs/binding.md "Levers, measured 2026-12-02"). A standalone harness, one thread,
seconds per run: its own vectorised batch builder (same token layout as ``interp.studies.binding.task``)
so that task variants the study does not offer can be screened (auxiliary one-hop queries
with their own marker ``!``), and a plain training loop (AdamW, warmup + cosine to 10%,
clipping 1.0, dense or single-query loss). Evaluation: whole-vocabulary argmax on the main
(first) query of 512 held-out single-query episodes of the final task.

    python benchmarks/binding_lab.py --hops 1 --n 2 --layers 2 --steps 2000 --eval_every 100
    python benchmarks/binding_lab.py --hops 2 --n 4 --layers 4 --phases 1:2:1500,1:3:500,1:4:1000

``--phases hops:n:steps,...`` (n = 0: objects drawn per step from 2..--n): hops 1 = context only, "? c -> s"; 2 = the brief's task;
5 = the brief's layout, '? s -> i' (the last hop first);
3 = the brief's layout, only "! x -> the token after x" queries; 4 = main queries then those;
6 = main queries (dense) then chains "! c s i" for every colour (the intermediate shape in the sequence:
    s scored at c, i scored at s), a per-step mixture of direct and chained two-hop queries.

``--mid K:W`` (2026-12-03): intermediate-layer supervision, training only: at every main two-hop
query the residual after block K (final norm + lm_head) is also scored on the intermediate shape
s_q, weight W (``--mid_read emb``: read out through the input embedding matrix instead of
lm_head, so that the intermediate state is pushed towards the embedding of s_q, the key a lookup
keyed by the token s_q uses); the evaluation is unchanged (the last layer, the main query, whole-vocab argmax).
``--back K:W``: backward intermediate supervision, training only: at every association item
i_k the residual after block K is scored on the colour bound to the item's shape (the item
gathers its colour, s_k i_k -> c_k; the query then only has to match c_q to it).
``--emb_init``: std of the input embeddings only. ``--out NAME``: the curve and the command line
to benchmarks/results/binding_lab/NAME.json.
"""
import sys, time, math, json, argparse
import numpy as np, torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--hops", type=int, default=1)
p.add_argument("--n", type=int, default=4)
p.add_argument("--pool", type=int, default=32)      # colours=shapes pool
p.add_argument("--items", type=int, default=32)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--d", type=int, default=64)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--dense", type=int, default=1)   # 1: query every pair (main first, rest permuted)
p.add_argument("--init", type=float, default=0.02)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--eval_every", type=int, default=250)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--m1", type=int, default=3)  # marker of 1-hop (hops=1) queries
p.add_argument("--beta2", type=float, default=0.999)
p.add_argument("--dff", type=int, default=0)
p.add_argument("--stop", type=float, default=2.0)
p.add_argument("--tie", type=int, default=0)
p.add_argument("--phases", default="")  # hops:n:steps,...
p.add_argument("--mid", default="")  # "K:W": intermediate-layer supervision (see the docstring)
p.add_argument("--back", default="")  # "K:W": backward intermediate supervision at the association items
p.add_argument("--mid_read", default="lm")  # intermediate readout: "lm" (lm_head) or "emb" (the input embeddings, tied)
p.add_argument("--emb_init", type=float, default=0.0)  # > 0: std of the input embeddings only
p.add_argument("--out", default="")  # run name: benchmarks/results/binding_lab/<out>.json
a = p.parse_args()
MID_K, MID_W = (int(a.mid.split(":")[0]), float(a.mid.split(":")[1])) if a.mid else (0, 0.0)
BACK_K, BACK_W = (int(a.back.split(":")[0]), float(a.back.split(":")[1])) if a.back else (0, 0.0)
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
# vocab: 0 pad,1 bos,2 |,3 ?, colours, shapes, items
C0 = 5; S0 = C0 + a.pool; I0 = S0 + a.pool; V = I0 + a.items
cfg = LlamaConfig(vocab_size=V, hidden_size=a.d, intermediate_size=a.dff or 4 * a.d, num_hidden_layers=a.layers,
                  num_attention_heads=a.heads, num_key_value_heads=a.heads, head_dim=a.d // a.heads,
                  max_position_embeddings=256, initializer_range=a.init, tie_word_embeddings=bool(a.tie), use_cache=False)
model = LlamaForCausalLM(cfg)
if a.emb_init > 0:
    torch.nn.init.normal_(model.model.embed_tokens.weight, std=a.emb_init)

def distinct(rng, b, n, pool):
    return np.argsort(rng.random((b, pool)), axis=1)[:, :n]

def batch(rng, b, n, dense, hops=None):
    """hops 1: ctx only, '? c -> s'; 2: the brief's layout, '? c -> i' (dense: every colour);
    3: brief's layout, aux only: '! x -> token after x' for every ctx colour and assoc shape;
    4: brief's layout, main queries (dense) then aux queries."""
    hops = a.hops if hops is None else hops
    c = distinct(rng, b, n, a.pool); s = distinct(rng, b, n, a.pool); it = distinct(rng, b, n, a.items)
    order = np.argsort(rng.random((b, n)), axis=1)
    toks = [np.full((b, 1), 1), np.stack([C0 + c, S0 + s], 2).reshape(b, 2 * n), np.full((b, 1), 2)]
    if hops >= 2:  # associations
        ss = np.take_along_axis(s, order, 1); ii = np.take_along_axis(it, order, 1)
        toks.append(np.stack([S0 + ss, I0 + ii], 2).reshape(b, 2 * n))
    qs = []  # (marker, query token [b], answer [b], intermediate shape [b] or None)
    if hops == 6:  # direct two-hop queries '? c -> i' (dense: every colour), then chains '! c s i' for every colour
        q = np.argsort(rng.random((b, n)), axis=1)
        if not dense: q = q[:, :1]
        for j in range(q.shape[1]):
            qs.append((3, np.take_along_axis(C0 + c, q[:, j:j+1], 1)[:, 0], np.take_along_axis(I0 + it, q[:, j:j+1], 1)[:, 0],
                       np.take_along_axis(S0 + s, q[:, j:j+1], 1)[:, 0]))
        q = np.argsort(rng.random((b, n)), axis=1)
        for j in range(q.shape[1]):
            qs.append(("chain", np.take_along_axis(C0 + c, q[:, j:j+1], 1)[:, 0], np.take_along_axis(S0 + s, q[:, j:j+1], 1)[:, 0],
                       np.take_along_axis(I0 + it, q[:, j:j+1], 1)[:, 0]))
    if hops == 5:  # the second hop alone: '? s -> i' (the association lookup, keyed by a shape token)
        q = np.argsort(rng.random((b, n)), axis=1)
        if not dense: q = q[:, :1]
        for j in range(q.shape[1]):
            qs.append((3, np.take_along_axis(S0 + s, q[:, j:j+1], 1)[:, 0], np.take_along_axis(I0 + it, q[:, j:j+1], 1)[:, 0], None))
    if hops in (1, 2, 4):
        q = np.argsort(rng.random((b, n)), axis=1)
        if not dense: q = q[:, :1]
        ans_of = (S0 + s) if hops == 1 else (I0 + it)
        for j in range(q.shape[1]):
            qs.append((a.m1 if hops == 1 else 3, np.take_along_axis(C0 + c, q[:, j:j+1], 1)[:, 0], np.take_along_axis(ans_of, q[:, j:j+1], 1)[:, 0],
                       None if hops == 1 else np.take_along_axis(S0 + s, q[:, j:j+1], 1)[:, 0]))
    if hops in (3, 4):
        keys = np.concatenate([C0 + c, S0 + s], 1); vals = np.concatenate([S0 + s, I0 + it], 1)
        q = np.argsort(rng.random((b, 2 * n)), axis=1)
        for j in range(q.shape[1]):
            qs.append((4, np.take_along_axis(keys, q[:, j:j+1], 1)[:, 0], np.take_along_axis(vals, q[:, j:j+1], 1)[:, 0], None))
    L = sum(t.shape[1] for t in toks)
    pos, tgt, mid, kind = [], [], [], []  # kind: 0 main two-hop '?', 1 other (one hop, '!' lookups, chains)
    for j, (m, k, v, s_) in enumerate(qs):
        if m == "chain":  # '! c s i': score s at c, then i at s (the intermediate shape in the sequence)
            toks += [np.full((b, 1), 4), k[:, None], v[:, None]]
            pos += [L + 1, L + 2]; tgt += [v, s_]; mid += [None, None]; kind += [1, 1]; L += 3
            if j < len(qs) - 1: toks.append(s_[:, None]); L += 1
            continue
        toks += [np.full((b, 1), m), k[:, None]]
        pos.append(L + 1); tgt.append(v); mid.append(s_); kind.append(0 if (m == 3 and s_ is not None) else 1); L += 2
        if j < len(qs) - 1: toks.append(v[:, None]); L += 1
    ids = torch.as_tensor(np.concatenate(toks, 1))
    midt = np.stack([np.full(b, -100) if x is None else x for x in mid], 1)
    if hops >= 2:  # the association items' positions and the colour bound to each item's shape
        bpos = torch.as_tensor(2 * n + 3 + 2 * np.arange(n)); btgt = torch.as_tensor(C0 + np.take_along_axis(c, order, 1))
    else:
        bpos = btgt = None
    return (ids, torch.as_tensor(np.array(pos)), torch.as_tensor(np.stack(tgt, 1)), torch.as_tensor(midt),
            torch.as_tensor(np.array(kind)), (bpos, btgt))

opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd, betas=(0.9, a.beta2))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1, s / a.steps)))))
erng = np.random.default_rng(999)
eval_set = batch(erng, 512, a.n, False, {4: 2, 6: 2}.get(a.hops, a.hops))  # the brief's single-query layout
t0 = time.time()
def evaluate():
    model.eval()
    with torch.no_grad():
        ids, pos, tgt = eval_set[:3]
        h = model.model(input_ids=ids).last_hidden_state
        lg = model.lm_head(h[:, pos[0]])
        acc = float((lg.argmax(-1) == tgt[:, 0]).float().mean())
    model.train(); return acc
res = []
def dump(final=False):
    import pathlib, os
    d = pathlib.Path(__file__).resolve().parent / "results" / "binding_lab"; d.mkdir(parents=True, exist_ok=True)
    json.dump(dict(command="python benchmarks/binding_lab.py " + " ".join(sys.argv[1:]), args=vars(a),
                   chance=1 / a.n, finished=final, final=res[-1] if res else None, curve=res,
                   torch_threads=torch.get_num_threads(), omp=os.environ.get("OMP_NUM_THREADS")),
              open(d / f"{a.out}.json", "w"), indent=1)
phases = [tuple(int(x) for x in ph.split(":")) for ph in a.phases.split(",")] if a.phases else [(a.hops, a.n, a.steps)]
a.steps = sum(p[2] for p in phases)
def phase_at(step):
    for h, n, k in phases:
        if step <= k: return h, n
        step -= k
    return phases[-1][:2]
for step in range(1, a.steps + 1):
    rng = np.random.default_rng([a.seed, step])
    h_, n_ = phase_at(step)
    if n_ == 0: n_ = int(rng.integers(2, a.n + 1))  # objects drawn per step in 2..--n
    ids, pos, tgt, midt, kind, (bpos, btgt) = batch(rng, a.bs, n_, a.dense, h_)
    out = model.model(input_ids=ids, output_hidden_states=MID_K > 0 or BACK_K > 0)
    def readout(k, p_):  # the residual after block k (final norm) through lm_head
        return model.lm_head(out.last_hidden_state[:, p_] if k == a.layers else model.model.norm(out.hidden_states[k][:, p_]))
    lg = model.lm_head(out.last_hidden_state[:, pos])
    loss = torch.nn.functional.cross_entropy(lg.flatten(0, 1), tgt.flatten())
    mloss = torch.zeros(())
    if MID_K > 0 and (midt >= 0).any():  # the intermediate shape from layer K's residual (final norm + lm_head)
        if a.mid_read == "lm": ml = readout(MID_K, pos)
        else: ml = model.model.norm(out.hidden_states[MID_K][:, pos]) @ model.model.embed_tokens.weight.T
        mloss = torch.nn.functional.cross_entropy(ml.flatten(0, 1), midt.flatten(), ignore_index=-100)
    bloss = torch.zeros(())
    if BACK_K > 0 and bpos is not None:  # at each association item, the colour bound to its shape
        bl = readout(BACK_K, bpos)
        bloss = torch.nn.functional.cross_entropy(bl.flatten(0, 1), btgt.flatten())
    opt.zero_grad(); (loss + MID_W * mloss + BACK_W * bloss).backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
    if step % a.eval_every == 0 or step == a.steps:
        with torch.no_grad():
            hit = (lg.argmax(-1) == tgt).float()
            main_b = float(hit[:, 0].mean()); other_b = float(hit[:, kind == 1].mean()) if (kind == 1).any() else None
            back_b = float((bl.argmax(-1) == btgt).float().mean()) if BACK_K > 0 and bpos is not None else None
            mid_b = float(((ml.argmax(-1) == midt).float().sum() / (midt >= 0).sum())) if MID_K > 0 and (midt >= 0).any() else None
        acc = evaluate()
        res.append(dict(step=step, hops=h_, n=n_, loss=round(loss.item(), 3), mid_loss=round(mloss.item(), 3),
                        batch_main=round(main_b, 3), batch_other=None if other_b is None else round(other_b, 3),
                        batch_mid=None if mid_b is None else round(mid_b, 3),
                        back_loss=round(bloss.item(), 3), batch_back=None if back_b is None else round(back_b, 3), acc=round(acc, 3), sec=round(time.time() - t0)))
        print(*res[-1].values(), flush=True)
        if a.out: dump()
        if acc >= a.stop: break
print("RESULT", json.dumps(vars(a)), res[-1])
if a.out: dump(final=True)

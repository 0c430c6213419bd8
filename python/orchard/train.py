"""Train a small byte-level GPT-2 on Orchard: `python -m orchard.train --help`.

By default the corpus is the Python standard library's own source, so nothing is downloaded. The run writes
checkpoints to --out (each a `checkpoint-<step>` directory holding a HuggingFace-layout model and the trainer's
state, written so that a kill at any moment leaves the previous one intact), a loss-curve PNG and a text sample,
and resumes from the newest checkpoint when run again.

Under an MPI launcher (`mpiexec -n 4 python -m orchard.train`) it trains data-parallel: every rank draws the same
batches and trains on its share of each batch's rows (--batch-size is the global batch, split evenly), gradients are
averaged over the ranks (DistributedDataParallel), and rank 0 writes the checkpoints, the plot and the sample. The
losses are those of one process training on the whole batches."""
import argparse
import os
import time

import numpy as np

from . import _core, distributed
from ._tensor import tensor
from .amp import GradScaler, autocast
from .autograd import no_grad
from .models import GPT2, GPT2Config
from .nn.parallel import DistributedDataParallel
from .nn.utils import clip_grad_norm_
from .optim import AdamW
from .optim.lr_scheduler import CosineWithWarmup
from .training import checkpoint
from .training.corpus import ByteBatches, read_files, stdlib_sources
from .training.plot import save_loss_curve
from .training.progress import ProgressLine

ARCHITECTURE_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m orchard.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", metavar="PATH", help="text files to train on (default: stdlib sources)")
    p.add_argument("--corpus-bytes", type=int, default=4_000_000, help="bytes of the default corpus to read")
    p.add_argument("--out", default="runs/gpt2",
                   help="run directory: checkpoint-<step> directories, resumed from the newest")
    p.add_argument("--device", default="cpu", choices=["cpu", "metal", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="bfloat16/float16: mixed precision (autocast; float16 adds loss scaling), weights stay float32")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--flash", action=argparse.BooleanOptionalAction, default=True,
                   help="causal FlashAttention (--no-flash: masked softmax)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-interval", type=int, default=50, help="steps between validation and checkpoints")
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--sample-bytes", type=int, default=200)
    p.add_argument("--seed", type=int, default=1337)
    return p.parse_args(argv)


def model_config(args):
    return GPT2Config(vocab_size=256, n_positions=args.seq_len, n_embd=args.n_embd, n_layer=args.n_layer,
                      n_head=args.n_head, resid_pdrop=args.dropout, embd_pdrop=args.dropout,
                      attn_pdrop=args.dropout, use_flash=args.flash)


def load_or_create_model(args, config):
    """The newest checkpointed model in --out and the trainer's state (its architecture must match the flags),
    else a new model and None."""
    if os.path.exists(os.path.join(args.out, "trainer_state.pkl")):
        raise SystemExit(f"{args.out} holds a checkpoint of an earlier Orchard, whose trainer state is a pickle (which "
                         "can run code when loaded, so it is not read); move it away or pass another --out")
    if Ranks.rank == 0:
        checkpoint.remove_incomplete(args.out)
    Ranks.barrier()
    path = checkpoint.latest(args.out)
    if path is None:
        return GPT2(config), None
    runtime = {k: getattr(config, k) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "use_flash")}
    model = GPT2.from_pretrained(path, **runtime)
    differing = [f"{k}: checkpoint {getattr(model.config, k)}, flags {getattr(config, k)}"
                 for k in ARCHITECTURE_FIELDS if getattr(model.config, k) != getattr(config, k)]
    if differing:
        raise SystemExit(f"{path} holds a different model ({'; '.join(differing)}); "
                         "pass matching flags or another --out")
    return model, checkpoint.load_trainer_state(path, map_location=args.device)


def make_optimizer(model, args):
    """AdamW, with weight decay on matrices only (not on biases and LayerNorm gains)."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


class Ranks:
    """This process's place in a data-parallel run: rank 0 of 1 unless started by an MPI launcher."""
    rank, world = 0, 1

    @classmethod
    def start(cls):
        if distributed.launched_by_mpi():
            distributed.init_process_group("mpi")
            cls.rank, cls.world = distributed.get_rank(), distributed.get_world_size()

    @classmethod
    def barrier(cls):
        if cls.world > 1:
            distributed.barrier()

    @classmethod
    def shard(cls, batch):
        """This rank's rows of each tensor of a global batch."""
        rows = batch[0].shape[0] // cls.world
        return tuple(t[cls.rank * rows:(cls.rank + 1) * rows].contiguous() for t in batch)

    @classmethod
    def mean(cls, value):
        """The mean over the ranks of a float (each rank's loss on its share: the whole batch's loss)."""
        if cls.world == 1:
            return value
        t = tensor([value], dtype=_core.dtype.float64)
        distributed.all_reduce(t, op=distributed.ReduceOp.AVG)
        return t.item()


def mixed_precision(args):
    """The autocast region the forward passes run in (a no-op for float32)."""
    return autocast(args.device, dtype=getattr(_core.dtype, args.dtype), enabled=args.dtype != "float32")


def evaluate(model, batches, args, rng):
    model.eval()
    with no_grad(), mixed_precision(args):
        losses = [model(*Ranks.shard(batches.sample("val", args.batch_size, rng, args.device)))[1].item()
                  for _ in range(args.eval_batches)]
    model.train()
    return Ranks.mean(float(np.mean(losses)))


def main(argv=None):
    args = parse_args(argv)
    Ranks.start()
    if args.batch_size % Ranks.world:
        raise SystemExit(f"--batch-size {args.batch_size} does not split evenly over {Ranks.world} ranks")
    _core.manual_seed(args.seed)
    data = read_files(args.data) if args.data else stdlib_sources(args.corpus_bytes)
    batches = ByteBatches(data, args.seq_len)
    model, trainer_state = load_or_create_model(args, model_config(args))
    model.to(args.device).train()
    trained = DistributedDataParallel(model) if Ranks.world > 1 else model
    optimizer = make_optimizer(model, args)
    scheduler = CosineWithWarmup(optimizer, args.warmup_steps, args.steps, min_lr_ratio=0.1)
    # float16's narrow range needs the loss scaled so that small gradients survive; bfloat16's does not.
    scaler = GradScaler(args.device, enabled=args.dtype == "float16")
    start, history = 0, {"train": [], "val": []}
    rng = np.random.default_rng(args.seed)  # draws the batches
    if trainer_state is not None:
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        if trainer_state.get("scaler"):  # absent or empty after a run without loss scaling
            scaler.load_state_dict(trainer_state["scaler"])
        start, history = trainer_state["step"], trainer_state["history"]
        rng.bit_generator.state = trainer_state["batch_sampler"]  # the batches an uninterrupted run would see
        _core.manual_seed(args.seed + start)  # so that dropout does not repeat the first steps' masks
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{n_params / 1e6:.2f}M parameters, {len(data):,} bytes of text, device {args.device}, {args.dtype}, "
          f"{'resuming at step ' + str(start) if start else 'starting fresh'} -> {args.steps} steps"
        + (f", {Ranks.world} ranks" if Ranks.world > 1 else ""))

    progress = ProgressLine(args.steps) if Ranks.rank == 0 else None
    tokens_per_step = args.batch_size * args.seq_len
    started = time.perf_counter()
    for step in range(start + 1, args.steps + 1):
        inputs, targets = Ranks.shard(batches.sample("train", args.batch_size, rng, args.device))
        with mixed_precision(args):
            _, loss = trained(inputs, targets)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clipping sees the true gradients
        clip_grad_norm_(model.parameters(), args.grad_clip)
        scaler.step(optimizer)  # skipped when a float16 gradient overflowed
        scaler.update()
        scheduler.step()
        history["train"].append((step, Ranks.mean(loss.item())))
        if progress:
            progress.update(step, history["train"][-1][1], tokens_per_step)
        if step % args.eval_interval == 0 or step == args.steps:
            history["val"].append((step, evaluate(model, batches, args, rng)))
            if Ranks.rank == 0:
                checkpoint.save(args.out, step, model, {
                    "step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "history": history, "batch_sampler": rng.bit_generator.state})
                progress.message(f"step {step}: val loss {history['val'][-1][1]:.4f}, checkpoint saved to {args.out}")
    if args.steps > start:
        say(f"trained {args.steps - start} steps in {time.perf_counter() - started:.1f}s")
    if Ranks.rank == 0:
        finish(model, history, args)


def say(text):
    if Ranks.rank == 0:
        print(text)


def finish(model, history, args):
    """Writes the loss curve and a sample of generated text."""
    os.makedirs(args.out, exist_ok=True)
    print(save_loss_curve(history, os.path.join(args.out, "loss.png")))
    prompt = np.frombuffer(b"def ", dtype=np.uint8).astype(np.int64)[None]
    _core.manual_seed(args.seed)  # the same sample for the same seed
    generated = model.generate(tensor(prompt, device=args.device), args.sample_bytes, temperature=0.8, top_k=40,
                               do_sample=True)
    text = bytes(generated.cpu().numpy()[0].astype(np.uint8).tolist()).decode("utf-8", errors="replace")
    with open(os.path.join(args.out, "sample.txt"), "w") as f:
        f.write(text)
    print("sample:\n" + text)


if __name__ == "__main__":
    main()

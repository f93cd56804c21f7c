"""Builders for the trajectory-matching methods (MTT, DATM, PAD) on a tiny expert buffer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentParser

from ddlight.methods.trajectory import DATM, TrajectoryMatching
from tests.helpers.builders import TinyDigits, make_experts, make_trainer, tiny_net

# Small enough for TinyDigits' two-expert, three-epoch buffer and a few seconds per test; what every
# method accepts (MTT's signature is the narrowest).
TINY_ARGS = dict(
    ipc=2,
    syn_steps=4,
    expert_epochs=1,
    max_start_epoch=2,
    batch_syn=4,
    lr_img=10.0,
    lr_lr=1e-4,
    lr_teacher_init=0.05,
    dsa_strategy="none",
    grid_every=0,
)


def write_buffer(root: Path) -> Path:
    """Two experts x 3 epochs of 3 batches at lr 0.05 on TinyDigits, which classify its test split
    perfectly (no curriculum: EL2N is tested in test_experts)."""
    make_trainer(6, root).fit(make_experts(root / "buf", scheduler=False, lr=0.05), datamodule=TinyDigits())
    return root / "buf"


def make_method(
    cls: type[TrajectoryMatching], buffer_dir: Path, net: torch.nn.Module | None = None, **kw
) -> TrajectoryMatching:
    # DATM's default window (20 -> 25 over 3000 iterations) exceeds the tiny buffer: grow 1 -> 2 instead.
    window = {"current_max_start_epoch": 1, "max_start_epoch_growth_steps": 2} if cls is DATM else {}
    return cls(net or tiny_net(), buffer_dir=str(buffer_dir), **{**TINY_ARGS, **window, **kw})


def fit(
    model: TrajectoryMatching,
    steps: int,
    root: Path,
    ckpt_path: Path | None = None,
    dm: object = None,
    precision: str = "32-true",
) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    # weights_only=False: outside the CLI the hparams hold the ConvNet object itself (our own file).
    trainer.fit(model, datamodule=dm or TinyDigits(), ckpt_path=ckpt_path, weights_only=False)
    return trainer


def plan_of(model: TrajectoryMatching, step: int = 0):
    return model.plan(step, torch.Generator().manual_seed(1234 + step))


def exposed(cls) -> dict:
    """The init args the CLI offers for ``cls`` (what ``--help`` lists), with their defaults."""
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "m", skip={"net"})
    return dict(parser.get_defaults().m)


# ------------------------------------------------------------------------------------------------ parity
# ddlight's side of the trajectory parity fixtures (``benchmarks/parity/{mtt,datm,pad}.py`` write them,
# ``tests/parity/test_{mtt,datm,pad}.py`` re-check them): the method's own step code, run on the state and
# the random draws the authors' loop made.


class ParityBuffer:
    """An in-memory expert buffer: what ``iteration_loss`` reads (``load_expert``)."""

    def __init__(self, trajectories: torch.Tensor) -> None:
        self.trajectories = trajectories
        self.completed = list(range(len(trajectories)))

    def load_expert(self, index: int, mmap: bool = False) -> torch.Tensor:
        return self.trajectories[index]


def parity_method(name: str, inputs: dict) -> TrajectoryMatching:
    """The ddlight method ``name`` (mtt, datm, pad) in a fixture's starting state: its images, labels (or
    label logits) and ``syn_lr``, its trajectories as the buffer, augmentation off (the fixtures')."""
    from torch import nn

    from ddlight.methods.trajectory import MTT, PAD
    from ddlight.models.convnet import ConvNet
    from ddlight.ops.augment import DSA

    s = dict(inputs["settings"])
    cls = {"mtt": MTT, "datm": DATM, "pad": PAD}[name]
    kw = {k: s[k] for k in ("ipc", "syn_steps", "expert_epochs", "max_start_epoch", "batch_syn", "lr_img",
                            "lr_lr", "lr_teacher_init")}  # fmt: skip
    kw.update({k: s[k] for k in s.get("ddlight", ())})
    model = cls(ConvNet(**inputs["net"]), buffer_dir="in-memory", dsa_strategy="none", grid_every=0, **kw)
    model.images = nn.Parameter(inputs["images"].clone())
    model.labels = inputs["labels"].clone()
    if "label_logits" in inputs:
        model.label_logits = nn.Parameter(inputs["label_logits"].clone())
    model.syn_lr.data.copy_(inputs["syn_lr"])
    model.dsa = DSA("none")
    model.buffer = ParityBuffer(inputs["trajectories"])
    return model


def parity_outer_steps(model: TrajectoryMatching, perm_seed: int, draws: list[dict]) -> list[dict]:
    """ddlight's outer steps on the authors' draws (expert, start epoch); the minibatches come from
    ddlight's own :func:`minibatch_schedule` on the generator seed the authors' permutations were drawn
    from. Per iteration: the loss, the gradients and the state after the update, and the batches used."""
    from ddlight.methods.trajectory import IterationPlan, minibatch_schedule

    opt = model.configure_optimizers()
    hp = model.settings
    gen, aug_gen = torch.Generator().manual_seed(perm_seed), torch.Generator().manual_seed(0)
    n = model.images.shape[0]
    state = {"images": model.images, "syn_lr": model.syn_lr}
    if model.label_logits is not None:
        state["labels"] = model.label_logits
    out = []
    for step, d in enumerate(draws):
        batches = minibatch_schedule(n, hp.batch_syn or n, hp.syn_steps, gen)
        augs = [model.dsa.sample(len(b), aug_gen, share_op=True) for b in batches]
        plan = IterationPlan(d["expert"], d["start_epoch"], model.max_start_bound(step), batches, augs)
        loss, _ = model.iteration_loss(plan)
        opt.zero_grad()
        loss.backward()
        model.apply_update(opt, {"loss": loss})
        rec = {"loss": loss.detach(), "batches": batches, "bound": torch.tensor(plan.bound)}
        if model._ok is not None:
            rec["skipped"] = ~model._ok
        for key, p in state.items():
            rec[f"grad_{key}"] = p.grad.detach().clone()
            rec[key] = p.detach().clone()
        out.append(rec)
    return out


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread while the fixtures' tiny graphs run: on a loaded 2-core host two threads made
    an outer step 15x slower (1.4 s against 0.09 s), synchronising more than they compute."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def their_batches(perms: list[torch.Tensor], batch: int, steps: int) -> list[torch.Tensor]:
    """The minibatches the references' loop takes from its permutations: each one split into chunks of
    ``batch``, popped from the end."""
    return [c for p in perms for c in reversed(p.split(batch))][:steps]


def assert_parity(fixture: dict, label: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """ours == theirs within the fixture's tolerance, relative to the largest magnitude of theirs (entries
    near zero are judged at that scale, as ``benchmarks.parity.fixtures.difference`` reports them)."""
    from tests.helpers.parity import assert_matches

    scale = theirs.detach().abs().max().clamp(min=1e-30)
    assert_matches(fixture, label, ours.detach().double() / scale, theirs.double() / scale)


def check_outer_steps(name: str) -> list[dict]:
    """Re-run fixture ``name``'s outer steps in ddlight and compare every iteration's loss, gradients
    and state, and the minibatches, with the authors' (``tests/parity/test_{mtt,datm,pad}.py``)."""
    from tests.helpers.parity import load

    fx = load(name)
    inputs, theirs = fx["inputs"], fx["outputs"]["iterations"]
    with one_thread():
        ours = parity_outer_steps(parity_method(name, inputs), inputs["perm_seed"], inputs["draws"])
    s = inputs["settings"]
    assert len(ours) == len(theirs) == s["iterations"]
    for i, (o, t, d) in enumerate(zip(ours, theirs, inputs["draws"], strict=True)):
        want = their_batches(d["perms"], s["batch_syn"], s["syn_steps"])
        assert [b.tolist() for b in o["batches"]] == [b.tolist() for b in want], f"it{i + 1} minibatches"
        for key in t:
            if t[key].dtype in (torch.bool, torch.long):  # the threshold's verdict, the window's bound
                assert bool((o[key] == t[key]).all()), f"it{i + 1} {key}: ours {o[key]}, theirs {t[key]}"
            else:
                assert_parity(fx, f"it{i + 1} {key}", o[key], t[key])
    return ours


def parity_label_init(inputs: dict) -> dict[str, torch.Tensor]:
    """ddlight's DATM initialisation on a fixture's candidates (class-major, ``pool`` per class, in the
    order the reference scans them): the rows kept (the first expert at ``label_expert_epoch`` decides)
    and their soft labels (mean logits of the experts that classify each correctly)."""
    from ddlight.methods.trajectory.buffer import parameter_layout, unflatten_parameters
    from ddlight.methods.trajectory.labels import correctly_classified, expert_logits, mean_where
    from ddlight.models.convnet import ConvNet

    net = ConvNet(**inputs["net"])
    names, shapes, sizes = parameter_layout(net)
    buffer = ParityBuffer(inputs["trajectories"])
    k, pool, ipc = inputs["net"]["num_classes"], inputs["pool"], inputs["settings"]["ipc"]
    epoch = inputs["settings"]["label_expert_epoch"]

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return unflatten_parameters(flat, names, shapes, sizes)

    logits = expert_logits(net, buffer, unflatten, inputs["candidates"], buffer.completed, epoch, "cpu")
    correct = logits.argmax(-1) == torch.arange(k).repeat_interleave(pool)
    rows, wrong = correctly_classified(correct, k, pool, ipc)
    return {"rows": rows, "logits": mean_where(logits[:, rows], correct[:, rows]), "wrong": wrong}


def window_bounds(inputs: dict) -> torch.Tensor:
    """ddlight's start-epoch bound over a fixture's table of windows and iterations."""
    from ddlight.methods.trajectory.window import start_bound

    w = inputs["window"]
    return torch.tensor([[start_bound(i, cur, top, end) for i in w["its"]] for cur, top, end in w["windows"]])


def parity_experts(root: Path, epochs: int, record: list | None = None) -> torch.Tensor:
    """ddlight's stage 1 for the buffer fixture: one expert on TinyDigits, ``epochs`` epochs of 3 batches,
    plain SGD (lr 0.01, no momentum, no weight decay, no augmentation, no curriculum), as MTT's
    ``buffer.py`` defaults; returns its (epochs + 1, P) trajectory. ``record`` collects every training
    batch (the harness hands them to the authors' loop)."""
    from ddlight.methods.trajectory import ExpertBuffer, Experts

    class Recording(Experts):
        def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201 (Lightning's hook)
            if record is not None:
                record.append((batch[0].detach().clone(), batch[1].detach().clone()))
            return super().training_step(batch, batch_idx)

    module = Recording(net=tiny_net(), num_experts=1, epochs=epochs, buffer_dir=str(root / "buf"),
                       scheduler=False, dsa_strategy="none", lr=0.01)  # fmt: skip
    make_trainer(epochs, root).fit(module, datamodule=TinyDigits())
    return ExpertBuffer(root / "buf").load_expert(0)

"""Train K runs that share an architecture as one vectorized model (a population); each writes what run() writes.

Why: a small MLP's step is mostly fixed cost (Python, Lightning, the optimizer's loop over tensors), not arithmetic,
so K members stepping together cost little more than one. `train_population` is run() for K configs at once: the
same checks before any folder exists, the same run folders, config.yaml, split, artifacts, TensorBoard scalars,
histograms and HParams record, best and last checkpoints (RegularizedMLP.load_from_checkpoint reads them), test
passes of best and last weights, summary.json on every way out. Each member keeps its own early stopping: a member
that stops leaves the stack and costs nothing more. A member resumes (`fit --resume`) as a population of one.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any, Callable, Optional, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_regularize.callbacks import epoch_line, printing_epochs
from lit_regularize.config import Config
from lit_regularize.data.multihot import MultiHot, gather_rows
from lit_regularize.errors import RunInterrupted, UserError
from lit_regularize.model import layer_summary
from lit_regularize.population.member import POPULATION_KEY, Member, drawing_from
from lit_regularize.population.optim import StackedOptimizer
from lit_regularize.population.stack import GroupedRows, MemberLinear, MemberView, StackedMLP, padded_crow
from lit_regularize.rundir import RunDir
from lit_regularize.run import (build_datamodule, build_model, check_batchnorm, check_hardware, has_hparams_record,
                                interrupt_reason, log_hparams, log_overfitting, note_missing_best,
                                sigterm_as_exception, write_failure_of)
from lit_regularize.stats import overfitting
from lit_regularize.summary import RunSummary, best_of
from lit_regularize.tb_extras import CURVES_LAYOUT, TensorBoardExtras
from lit_regularize.trainer import TEST_PREFIX, RunLogger


def device_for(cfg: Config) -> torch.device:
    """The population's device: a GPU where --accelerator asks for one or (auto) one is available, else the CPU."""
    if cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available()):
        d = cfg.devices.strip()
        return torch.device(f"cuda:{d.split(',')[0]}" if "," in d else "cuda")
    return torch.device("cpu")


def prepare(cfg: Config, resume: Optional[RunDir] = None) -> Member:
    """A member as run() starts a run: seeded, its data split and checked, its model built (initial weights drawn
    from its seed); a resume takes weights, random stream and history from last.ckpt. No folder is created."""
    check_hardware(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.copy_rows = False  # the members' splits view one copy of the data
    dm.prepare_data()
    dm.setup("fit")
    check_batchnorm(cfg, dm)
    template = build_model(cfg, dm.n_features, dm.n_classes)
    gen = torch.Generator()
    gen.set_state(torch.get_rng_state())
    member = Member(cfg, dm, template, gen, resume)
    if resume is not None:
        ckpt = torch.load(resume.last_checkpoint, map_location="cpu", weights_only=True)
        template.load_state_dict(ckpt["state_dict"])
        member.restore(ckpt[POPULATION_KEY])
        member.saved_optimizer = ckpt[POPULATION_KEY]["optimizer"]
        best = resume.best_checkpoints().get(ckpt[POPULATION_KEY]["best_epoch"])
        if best is not None:
            member.best_path = best
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            member.best_state = _layers_from_state_dict(member, state)
    return member


def _layers_from_state_dict(member: Member, state: dict[str, torch.Tensor]) -> list:
    model = member.template
    names = {id(m): n for n, m in model.named_modules()}
    return [(state[f"{names[id(lin)]}.weight"].clone(), state[f"{names[id(lin)]}.bias"].clone())
            for lin in model.linears()]


def is_member_checkpoint(rundir: RunDir) -> bool:
    """Whether a run folder's last.ckpt was written by a population member (it resumes as a population of one)."""
    try:
        ckpt = torch.load(rundir.last_checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - RunDir.open refuses a missing or damaged last.ckpt itself
        return False
    return POPULATION_KEY in ckpt


class Population:
    """K members' stacked weights, optimizer and training loop."""

    def __init__(self, members: Sequence[Member], device: torch.device) -> None:
        self.members = list(members)
        self.device = device
        self.stack = StackedMLP([m.template.linears() for m in self.members], self.members[0].template.binary)
        self.stack.to(device)
        self.optimizer = StackedOptimizer(self.members[0].cfg.optimizer, list(self.stack.parameters()),
                                          [m.cfg.lr for m in self.members])
        for k, m in enumerate(self.members):
            if m.saved_optimizer is not None:
                self.optimizer.load_member(k, m.saved_optimizer)
        self.active = list(self.members)  # the members still in the stack, in stack order
        self.extras = [TensorBoardExtras(every=m.cfg.histogram_every) for m in self.members]

    # -- one epoch ------------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[Member, dict[str, Optional[float]]]:
        """One epoch of every active member; each member's train metrics."""
        active = self.active
        K = len(active)
        batches = [m.epoch_batches() for m in active]
        n_steps = max(len(b) for b in batches)
        sums = torch.zeros(4, K, dtype=torch.float64, device=self.device)  # loss, correct, penalty, objective
        seen = torch.zeros(K, dtype=torch.float64, device=self.device)
        views = [MemberView(self.stack, k, m.cfg.lr) for k, m in enumerate(active)]
        replacing = any(r.replaces_loss for m in active for r in m.regularizers)
        penalty_regs: dict[type, list] = {}  # each penalty's class -> every member's instance of it (or None)
        for k, m in enumerate(active):
            for r in m.penalties:
                penalty_regs.setdefault(type(r), [None] * K)[k] = r
        self.stack.train()
        sets = [m.dm.train_set for m in active]
        source = _shared_rows(sets)
        none: Any = []  # a member without a batch this step
        if source is not None:  # each member's epoch of rows as one tensor, split into its steps
            batches = [_epoch_rows(ds, b) for ds, b in zip(sets, batches)]
            none = torch.zeros(0, dtype=torch.long)
        for s in range(n_steps):
            step = [b[s] if s < len(b) else none for b in batches]
            xs, ys, counts = (self._gather_groups(source, step) if source is not None
                              else self._batches(sets, None, step))
            present = torch.tensor([c > 0 for c in counts], device=self.device)
            width = max(counts)
            logits = self.stack(xs, width, self._blocks(active, counts))
            labels = _labels(ys, width, self.device)
            rows = self._row_losses(logits, labels)
            mask = _mask(counts, width, self.device)
            n = torch.tensor(counts, dtype=logits.dtype, device=self.device).clamp_min(1)
            data_loss = (rows * mask).sum(1) / n
            objective = self._objectives(active, views, logits, ys, counts, data_loss) if replacing else data_loss
            penalties = data_loss.new_zeros(K)
            for cls, regs in penalty_regs.items():
                penalties = penalties + cls.population_penalty(regs, views, list(self.stack.weights))
            total = (objective + penalties)[present].sum()
            self.optimizer.zero_grad()
            total.backward()
            stepped = [k for k, c in enumerate(counts) if c]  # members with a batch this step
            for k in stepped:
                for r in active[k].regularizers:
                    r.before_step(views[k], None)  # e.g. weight decay
            self.optimizer.step(present)
            for k in stepped:
                active[k].global_step += 1
                for r in active[k].regularizers:
                    r.after_step(views[k])  # e.g. a max-norm constraint
            with torch.no_grad():
                c = torch.tensor(counts, dtype=torch.float64, device=self.device)
                correct = ((_preds(logits) == labels) & mask).sum(1)
                sums += torch.stack([data_loss.double() * c, correct.double(), penalties.double() * c,
                                     objective.double() * c])
                seen += c
        sums = (sums / seen.clamp_min(1)).tolist()
        out = {}
        for k, m in enumerate(active):
            row: dict[str, Optional[float]] = {"train_loss": sums[0][k], "train_acc": sums[1][k]}
            row["train_penalty"] = sums[2][k] if m.penalties else None
            if m.objective_name is not None:
                row["objective"] = sums[3][k]
            out[m] = row
        return out

    def _batches(self, sets: Sequence[Any], source: Optional[tuple],
                 positions: Sequence[Sequence[int]]) -> tuple[Any, list[torch.Tensor], list[int]]:
        """Each member's batch of these positions of its dataset (none: an empty batch), gathered at once where
        the datasets read the same arrays (source, from _shared_rows)."""
        if source is not None:
            return self._gather_groups(source, [ds.array_rows(p) for ds, p in zip(sets, positions)])
        return self._batch([ds.__getitems__(list(p)) if len(p) else None for ds, p in zip(sets, positions)])

    def _objectives(self, active: Sequence[Member], views: Sequence[MemberView], logits: torch.Tensor,
                    ys: Sequence[torch.Tensor], counts: Sequence[int], data_loss: torch.Tensor) -> torch.Tensor:
        """Each member's training objective: its data loss, or what a regularizer's train_loss puts in its place
        (e.g. smoothed targets; train/loss stays the data loss)."""
        objectives = list(data_loss.unbind())
        for k, m in enumerate(active):
            for r in m.regularizers if counts[k] else ():
                out = r.train_loss(views[k], logits[k, :counts[k]], ys[k][:counts[k]])
                objectives[k] = objectives[k] if out is None else out
        return torch.stack(objectives)

    def _gather_groups(self, source: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rows: Sequence[torch.Tensor]
                       ) -> tuple[GroupedRows, list[torch.Tensor], list[int]]:
        """Every member's batch (its rows of the arrays their datasets view) gathered; consecutive members whose
        batches are the same rows (same seed and split) form one group, gathered once (GroupedRows)."""
        crow_all, cols_all, labels = source
        counts = [len(r) for r in rows]
        width = max(counts)
        spans, crows, cols, ys = [], [], [], []
        for k, r in enumerate(rows):
            if spans and torch.equal(r, rows[spans[-1][0]]):
                spans[-1] = (spans[-1][0], k + 1)
                ys.append(ys[-1])
                continue
            crow, c = gather_rows(crow_all, cols_all, r)
            spans.append((k, k + 1))
            crows.append(padded_crow(crow, width))
            cols.append(c)
            ys.append(labels.index_select(0, r).to(self.device))
        return GroupedRows(spans, crows, cols), ys, counts

    def _batch(self, parts: Sequence[Optional[tuple[Any, torch.Tensor]]]) -> tuple[list, list, list[int]]:
        """Member batches with an empty one for members without a batch this step; labels on the device."""
        like = next(p for p in parts if p is not None)
        xs, ys, counts = [], [], []
        for p in parts:
            if p is None:
                x = (MultiHot(torch.zeros(1, dtype=torch.long), like[0].cols[:0], like[0].n_features)
                     if isinstance(like[0], MultiHot) else like[0][:0])
                y = like[1][:0]
            else:
                x, y = p
            xs.append(x if isinstance(x, MultiHot) else x.to(self.device))
            ys.append(y.to(self.device))
            counts.append(len(y))
        return xs, ys, counts

    def _blocks(self, active: Sequence[Member], counts: Sequence[int]) -> Optional[Any]:
        """What the members' hidden_block modules do while training (dropout), member by member."""
        if not any(m.hidden_hooks for m in active):
            return None
        cpu = self.device.type == "cpu"

        def blocks(h: torch.Tensor, index: int) -> torch.Tensor:
            rows = list(h.unbind(0))
            for k, m in enumerate(active):
                if m.hidden_hooks and counts[k]:
                    part = rows[k][:counts[k]]
                    for r in m.hidden_hooks:
                        part = r.member_hidden(part, index, m.gen if cpu else m.device_generator(self.device))
                    rows[k] = torch.cat([part, rows[k][counts[k]:]])
            return torch.stack(rows)
        return blocks

    def _row_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(K, width) per-example data losses of the padded class ids `_labels` gives (padding rows: anything,
        masked later)."""
        y = labels.clamp_min(0)
        if self.stack.binary:
            return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view_as(y)

    # -- evaluation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, members: Sequence[Member], stack: StackedMLP, split: str) -> list[Optional[dict[str, float]]]:
        """Each member's mean data loss and accuracy on its 'val' or 'test' set (None without one)."""
        stack.eval()
        K = len(members)
        loss = torch.zeros(K, dtype=torch.float64, device=self.device)
        correct = torch.zeros(K, dtype=torch.float64, device=self.device)
        seen = torch.zeros(K, dtype=torch.float64, device=self.device)
        sets = [m.eval_set(split) for m in members]
        source = _shared_rows(sets)
        for i in range(max(m.eval_batches(split) for m in members)):
            xs, ys, counts = self._batches(sets, source, [m.eval_span(split, i) for m in members])
            width = max(counts)
            logits = stack(xs, width)
            mask = _mask(counts, width, self.device)
            labels = _labels(ys, width, self.device)
            rows = self._row_losses(logits, labels)
            loss += (rows * mask).double().sum(1)
            correct += ((_preds(logits) == labels) & mask).double().sum(1)
            seen += torch.tensor(counts, dtype=torch.float64, device=self.device)
        out = []
        for k, m in enumerate(members):
            n = float(seen[k])
            out.append({"loss": float(loss[k]) / n, "acc": float(correct[k]) / n} if n else None)
        return out

    # -- members leaving ----------------------------------------------------------------------------------
    def leave(self, members: Sequence[Member]) -> None:
        """These (stopped) members keep their last weights and leave the stack."""
        keep = [k for k, m in enumerate(self.active) if m not in members]
        for k, m in enumerate(self.active):
            if m in members:
                m.last_state = self.stack.member_state(k)
        self.active = [self.active[k] for k in keep]
        if self.active:
            self.stack.keep(keep)
            self.optimizer.keep(keep, list(self.stack.parameters()))


def sharing_order(members: Sequence[Member]) -> list[Member]:
    """Members with the same seed side by side (stable): with the same split they draw the same batches, and
    consecutive members with the same rows are gathered and multiplied as one group."""
    return sorted(members, key=lambda m: m.cfg.seed)


def _shared_rows(sets: Sequence[Any]) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The sparse arrays (crow, cols, labels) every one of these datasets reads (their viewed_arrays()), else None:
    then each member's batch is built by its own dataset."""
    arrays = [ds.viewed_arrays() if hasattr(ds, "viewed_arrays") else None for ds in sets]
    first = arrays[0]
    if first is None or any(a is None or a[0] is not first[0] or a[1] is not first[1] for a in arrays):
        return None
    return first


def _epoch_rows(ds: Any, batches: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """The array rows (ds.array_rows) of an epoch's batches of positions, converted at once (batch by batch,
    the lists' conversion cost 0.7 s of a 12-member compare)."""
    flat = torch.as_tensor([i for b in batches for i in b], dtype=torch.long)
    return list(ds.array_rows(flat).split([len(b) for b in batches]))


def _mask(counts: Sequence[int], width: int, device: torch.device) -> torch.Tensor:
    return torch.arange(width, device=device).unsqueeze(0) < torch.tensor(counts, device=device).unsqueeze(1)


def _preds(logits: torch.Tensor) -> torch.Tensor:
    return (logits > 0).long() if logits.dim() == 2 else logits.argmax(-1)


def _labels(ys: Sequence[torch.Tensor], width: int, device: torch.device) -> torch.Tensor:
    y = torch.full((len(ys), width), -1, dtype=torch.long, device=device)
    for k, yk in enumerate(ys):
        y[k, :len(yk)] = yk.long()
    return y


# -- the run() of a population -------------------------------------------------------------------------------

EpochHook = Callable[[int, int, Optional[float], bool], bool]


def train_population(cfgs: Sequence[Config], resumes: Optional[Sequence[Optional[RunDir]]] = None,
                     evaluate_test: bool = True, save_last: bool = True, hparam_keys: Sequence[str] = (),
                     shown_models: Optional[set[str]] = None, on_epoch: Optional[EpochHook] = None
                     ) -> list[RunSummary]:
    """run() for every config at once (they share hidden, layers, optimizer, batch size, data kind and input width:
    `groups` forms such sets); a summary per config, in order. Bad input fails before any folder exists.

    on_epoch(i, epoch, val_loss, ending) is called after every epoch of member i (cfgs[i]; epoch 1-based, ending:
    the member stops after it anyway); True stops the member there with stop reason "pruned" (a sweep's pruner)."""
    from lit_regularize.population import shape_key

    t_start = time.perf_counter()
    if len({shape_key(c) for c in cfgs}) > 1:
        raise ValueError("a population's members must share every setting but the per-member ones "
                         "(lit_regularize.population.groups forms such sets)")
    resumes = list(resumes) if resumes is not None else [None] * len(cfgs)
    with contextlib.ExitStack() as held:
        for r in resumes:
            if r is not None:
                r.lock()
                held.callback(r.unlock)
                r.check_writable()
        members = [prepare(c, r) for c, r in zip(cfgs, resumes)]
        shapes = {(m.dm.n_features, m.dm.n_classes) for m in members}
        if len(shapes) > 1:
            raise UserError(f"a population's members must share their input width and classes, got {sorted(shapes)}")
        for m in members:
            if m.rundir is None:
                m.rundir = RunDir.claim(m.cfg.logdir, m.cfg.run_name)
                m.rundir.lock()
                held.callback(m.rundir.unlock)
        held.enter_context(sigterm_as_exception())  # SIGTERM: every member's summary says "interrupted"
        return _train(members, device_for(cfgs[0]), t_start, evaluate_test, save_last, hparam_keys, shown_models,
                      on_epoch)


def _open_outputs(m: Member, size: int, index: int) -> None:
    """The member's TensorBoard logger, config, split, artifacts and first summary.json, as run() writes them."""
    rundir = m.rundir
    resuming = m.resumed
    if resuming:  # a resume: TensorBoard hides what a cut session logged for the epochs trained again
        purge = m.epochs + 1
    else:
        purge = None
    previous = rundir.read_summary() if resuming else None
    m.summary = _new_summary(m, size, index)  # first: an interrupt from here on is written into it (_fail)
    m.summary.wall_time = previous.wall_time if previous is not None else 0.0
    m.logger = RunLogger(save_dir=str(rundir.path.parent), name="", version=rundir.path.name,
                         default_hp_metric=False, purge_step=purge)
    m.logger.hparams.update(m.cfg.to_dict())
    rundir.write_config(m.cfg)
    if not resuming:
        rundir.write_split(m.dm.split_record())
        rundir.write_artifacts(m.dm.artifacts())
        m.logger.experiment.add_custom_scalars(CURVES_LAYOUT)
    m.logger.save()
    m.summary.write()


def _new_summary(m: Member, size: int, index: int) -> RunSummary:
    return RunSummary(config=m.cfg.to_dict(), seed=m.cfg.seed, n_params=m.n_params, run_dir=m.rundir.path,
                      population={"size": size, "index": index})


def _train(members: list[Member], device: torch.device, t_start: float, evaluate_test: bool, save_last: bool,
           hparam_keys: Sequence[str], shown_models: Optional[set[str]], on_epoch: Optional[EpochHook] = None
           ) -> list[RunSummary]:
    try:
        return _train_members(members, device, t_start, evaluate_test, save_last, hparam_keys, shown_models,
                              on_epoch)
    except BaseException as e:  # from the first file on: every member's summary says what ended it
        raise _fail(members, e, save_last) from None


def _train_members(members: list[Member], device: torch.device, t_start: float, evaluate_test: bool,
                   save_last: bool, hparam_keys: Sequence[str], shown_models: Optional[set[str]],
                   on_epoch: Optional[EpochHook]) -> list[RunSummary]:
    size = len(members)
    for i, m in enumerate(members):
        _open_outputs(m, size, i)
    if members[0].cfg.progress and printing_epochs():
        shown = shown_models if shown_models is not None else set()
        for m in members:  # each distinct model once (dropout members have Dropout layers, the others not)
            table = layer_summary(m.template)
            if table not in shown:
                print(table)
                shown.add(table)
    todo = [m for m in members if m.epochs < m.cfg.max_epochs and m.stop is None]
    for m in members:
        if m not in todo:
            m.stop = m.stop or "max_epochs"
            m.last_state = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in m.template.linears()]
    pop = Population(sharing_order(todo), device) if todo else None
    # A member's wall_time and epoch_time are its share of the population's time: each epoch's seconds divided
    # among the members that trained in it, set-up and test passes among all (the members' times add up to the
    # population's, so a table's "wall time" is what each run cost).
    start = time.perf_counter()
    for m in members:
        m.summary.wall_time += (start - t_start) / size
    while pop is not None and pop.active:
        t0 = time.perf_counter()
        train_rows = pop.train_epoch()
        active = list(pop.active)
        val = pop.evaluate(active, pop.stack, "val") if any(m.validating for m in active) else [None] * len(active)
        seconds = time.perf_counter() - t0
        share = seconds / len(pop.active)
        stopped = []
        for k, m in enumerate(active):
            row = dict(train_rows[m])
            if m.validating:
                m.validation_draw()
                if val[k] is not None:
                    row["val_loss"], row["val_acc"] = val[k]["loss"], val[k]["acc"]
            best = m.end_epoch(row, share)
            if on_epoch is not None and on_epoch(members.index(m), m.epochs, row.get("val_loss"),
                                                 m.stop is not None) and m.stop is None:
                m.stop = "pruned"
            _log_epoch(m, row, pop, k)
            state = pop.stack.member_state(k)
            if best:
                m.best_state = state
                _save_best(m, state)
            if save_last:
                m.save(m.rundir.last_checkpoint,
                       m.checkpoint(state, m.resume_state(pop.optimizer.member_state(k))))
            _fill(m)  # in memory: written at the end or by whatever ends the run (_fail), as run() does
            if m.stop is not None:
                stopped.append(m)
        if printing_epochs():
            print(_epoch_report(active, stopped, seconds), flush=True)
        if stopped:
            pop.leave(stopped)
        for m in active:  # the epoch's outputs (checkpoints, TensorBoard, summaries) count too
            m.summary.wall_time += (time.perf_counter() - t0) / len(active)
    _finish(members, pop, evaluate_test, save_last, hparam_keys)
    return [m.summary for m in members]


def _save_best(m: Member, state: list) -> None:
    path = m.rundir.checkpoint_dir / f"best-epoch{m.epochs:03d}.ckpt"
    m.save(path, m.checkpoint(state))
    if m.best_path is not None and m.best_path != path:
        m.best_path.unlink(missing_ok=True)
    m.best_path = path


def _log_epoch(m: Member, row: dict[str, Optional[float]], pop: Population, k: int) -> None:
    """The epoch's scalars (and weight histograms) in the member's TensorBoard run, at its 1-based epoch."""
    names = {"train_loss": "train/loss", "train_acc": "train/acc", "train_penalty": "train/penalty",
             "val_loss": "val/loss", "val_acc": "val/acc", "objective": m.objective_name}
    metrics = {names[key]: v for key, v in row.items() if v is not None and names.get(key)}
    m.logger.log_metrics(metrics, step=m.epochs)
    extras = pop.extras[pop.members.index(m)]
    if extras.every and m.epochs % extras.every == 0:
        extras.log_weights(m.logger.experiment, MemberView(pop.stack, k, m.cfg.lr).linears(), m.epochs)


def _fill(m: Member) -> None:
    s, h = m.summary, m.history
    s.history = h
    s.epochs_run = len(h["epoch"])
    s.global_step = m.global_step
    s.best_epoch, s.best_val_loss, s.best_val_acc = best_of(h)
    s.overfitting = overfitting(h, s.best_epoch)
    s.stop_reason = m.stop
    s.best_checkpoint = m.rundir.rel(m.best_path) if m.best_path is not None else None
    s.last_checkpoint = m.rundir.rel(m.rundir.last_checkpoint) if m.rundir.last_checkpoint.is_file() else None


def _epoch_report(active: Sequence[Member], stopped: Sequence[Member], seconds: float) -> str:
    """One line per population epoch: the members' val/loss range and who stopped; a single member: fit's line."""
    if len(active) == 1:
        return epoch_line(active[0].history, active[0].cfg.max_epochs)
    epoch = max(m.epochs for m in active)
    width = len(str(max(m.cfg.max_epochs for m in active)))
    vals = [m.history["val_loss"][-1] for m in active if m.history["val_loss"] and m.history["val_loss"][-1] is not None]
    best = sum(best_of(m.history)[0] == m.epochs for m in active)
    parts = [f"Epoch {epoch:>{width}}", f"{seconds:6.1f}s", f"{len(active)} members"]
    if vals:
        parts.append(f"val/loss {min(vals):.4f}..{max(vals):.4f} ({best} at their best)")
    if stopped:
        parts.append(f"{len(stopped)} stopped")
    return " - ".join(parts)


def _finish(members: list[Member], pop: Optional[Population], evaluate_test: bool, save_last: bool,
            hparam_keys: Sequence[str]) -> None:
    """Test passes of the best and last weights (two stacks of every member), HParams records, final summaries."""
    t0 = time.perf_counter()
    device = pop.device if pop is not None else torch.device("cpu")
    best_files = {}
    for m in members:
        best_files[m] = m.rundir.keep_best(m.summary.best_epoch)
        m.summary.best_checkpoint = m.rundir.rel(best_files[m])
        m.summary.last_checkpoint = m.rundir.rel(m.rundir.last_checkpoint) if save_last else None
        note_missing_best(m.summary, best_files[m], m.validating, m.rundir, True)
    if evaluate_test:
        members = sharing_order(members)
        helper = pop if pop is not None else Population(members, device)
        last = helper.evaluate(members, _stack_of(members, [m.last_state for m in members], device), "test")
        with_best = [m for m in members if best_files[m] is not None and m.best_state is not None]
        best = helper.evaluate(with_best, _stack_of(with_best, [m.best_state for m in with_best], device),
                               "test") if with_best else []
        best_of_member = dict(zip(with_best, best))
        for m, result in zip(members, last):
            m.summary.test = {"last": result}
            m.logger.log_metrics({f"{TEST_PREFIX['last']}/{k}": v for k, v in result.items()},
                                 step=m.summary.epochs_run)
            if m in best_of_member:
                m.summary.test["best"] = best_of_member[m]
                m.logger.log_metrics({f"{TEST_PREFIX['best']}/{k}": v for k, v in best_of_member[m].items()},
                                     step=m.summary.best_epoch)
            elif not m.validating:  # nothing validated: the last weights are the run's chosen ones
                m.summary.test["best"] = result
    for m in members:
        s = m.summary
        s.status, s.exit_code = "completed", 0
        log_overfitting(m.logger, s)
        log_hparams(m.logger, m.cfg, s, hparam_keys, again=m.resumed and has_hparams_record(m.rundir.path))
        m.logger.finalize("success")
    share = (time.perf_counter() - t0) / len(members)
    for m in members:
        m.summary.wall_time += share
        m.summary.write()


def _stack_of(members: Sequence[Member], states: Sequence[list], device: torch.device) -> StackedMLP:
    """A stack of these members holding the given (weight, bias) layer states."""
    linears = [[MemberLinear(w, b) for w, b in state] for state in states]
    return StackedMLP(linears, members[0].template.binary).to(device)


def _fail(members: Sequence[Member], e: BaseException, save_last: bool) -> BaseException:
    """Every unfinished member's summary.json says what ended it (interrupted or failed), as run() does; the
    exception to raise (a write failure as one line, Ctrl-C as RunInterrupted)."""
    first_failure = None
    for i, m in enumerate(members):
        if m.summary is None and m.rundir is not None:  # stopped before its outputs were opened
            m.summary = _new_summary(m, len(members), i)
        s = m.summary
        if s is None or s.status == "completed":
            continue
        failure = write_failure_of(e, m.rundir, save_last)
        first_failure = first_failure or failure
        reason = None if failure is not None else interrupt_reason(e, None)
        error = failure or e
        s.status = "interrupted" if reason else "failed"
        s.test = None
        s.stop_reason = reason or (failure.reason if failure is not None else "error")
        s.exit_code = 130 if reason else (2 if isinstance(error, UserError) else 1)
        if not reason:
            s.error = f"{type(error).__name__}: {error}"
        with contextlib.suppress(Exception):
            s.write()
    reason = interrupt_reason(e, None)
    if reason:
        return RunInterrupted(members[0].rundir.path, reason)
    return first_failure or e


__all__ = ["train_population", "prepare", "Population", "device_for", "is_member_checkpoint"]

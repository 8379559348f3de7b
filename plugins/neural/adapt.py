"""Learning the user's documents: a copy of the network fine-tuned on them, the base untouched.

``foretell learn`` keeps documents in an adaptation layer (``engine.adaptation``) and asks the base
model for itself with those documents learned. A neural model answers with a copy of its network
trained on them for a few passes, as dynamic evaluation does (Krause et al. 2018, "Dynamic
Evaluation of Neural Sequence Models": gradient steps on text already seen, from the trained
weights): the base weights are never written, so forgetting every document is the base exactly,
and forgetting one fine-tunes the base again on the rest (seeded: the same documents give the
same weights). Words the base did not know get rows of their own, started from ``<unk>``'s, so a
learned name can be predicted and completed.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from engine.errors import ModelFormatError
from engine.vocab import SPECIALS, UNK_ID, Vocabulary
from plugins.neural.softmax import TiedEmbedding
from plugins.neural.training import OPTIMIZERS


def grow(net: nn.Module, extra: int) -> None:
    """Give ``net`` (an ``embed`` and an ``OutputLayer`` named ``out``, maybe ``direct``) rows
    for ``extra`` new words after its last. Each starts as ``<unk>`` did: its embedding, and
    with the full softmax its output row, with ``<unk>`` and the new words sharing what
    ``<unk>`` had (the distribution over known words is unchanged until training moves it).
    With the adaptive softmax they join its rarest cluster, each row the cluster's mean (and,
    input and output tied, that row is their embedding too)."""
    if extra <= 0:
        return
    out = net.out
    tied = getattr(out, "linear", None) is not None and out.linear.weight is net.embed.weight
    if not isinstance(net.embed, TiedEmbedding):  # (a tied adaptive layer reads new words' vectors from their output rows)
        net.embed.weight = _with_rows(net.embed.weight, net.embed.weight[UNK_ID], extra)
        net.embed.num_embeddings += extra
    if out.kind == "full":
        share = math.log(extra + 1)
        out.linear.weight = net.embed.weight if tied else _with_rows(out.linear.weight, out.linear.weight[UNK_ID], extra)
        bias = out.linear.bias.detach().clone()
        bias[UNK_ID] -= share
        out.linear.bias = nn.Parameter(torch.cat([bias, bias[UNK_ID].expand(extra)]))
        out.linear.out_features += extra
    else:  # the adaptive softmax: new words join its last (rarest) cluster
        a = out.adaptive
        last = a.tail[-1][1]
        last.weight = _with_rows(last.weight, last.weight.mean(0), extra)
        last.out_features += extra
        a.n_classes += extra
        a.cutoffs[-1] += extra
        out.rank = torch.cat([out.rank, torch.arange(len(out.rank), len(out.rank) + extra)])
    if getattr(net, "direct", None) is not None:
        net.direct.weight = _with_rows(net.direct.weight, net.direct.weight[UNK_ID], extra)
        net.direct.out_features += extra


def new_words(facts: dict, vocab_size: int, what: str) -> int:
    """How many words a saved learned copy (``what``) added to its base's vocabulary (0 for a
    base): its network is built at the base's size and grown, as it was when it learned."""
    learned = facts.get("learned")
    if learned is None:
        return 0
    extra = learned.get("new_words") if isinstance(learned, dict) else None
    if not isinstance(extra, int) or isinstance(extra, bool) or not 0 <= extra <= vocab_size - len(SPECIALS):
        raise ModelFormatError(f"{what}: its record of learned words is corrupt ({learned!r:.80})")
    return extra


def _with_rows(weight: torch.Tensor, row: torch.Tensor, extra: int) -> nn.Parameter:
    return nn.Parameter(torch.cat([weight.detach(), row.detach().expand(extra, -1)]))


def learning_rate(model) -> float:
    """``adapt_lr`` if given, else a tenth of the rate training started at (what keeps a few
    passes over a short document from undoing what the base learned; bench/adaptation_neural.py)."""
    options = model.options
    return options.adapt_lr if options.adapt_lr is not None else options.lr / 10


def recent(streams: list[np.ndarray], tokens: int) -> list[np.ndarray]:
    """The last-learned streams holding about ``tokens`` tokens (whole documents, at least one):
    fine-tuning costs time in proportion to what it reads, and is done again at every learn."""
    kept, total = [], 0
    for stream in reversed(streams):
        if kept and total + len(stream) > tokens:
            break
        kept.append(stream)
        total += len(stream)
    return kept[::-1] or [np.zeros(0, dtype=np.int64)]


def fine_tuned(model, words: list[str], streams: list[np.ndarray]):
    """``model`` (a NeuralModel) with ``words`` added and its network trained on ``streams``
    (ids over the extended vocabulary; the most recent ``adapt_tokens`` of them) for
    ``adapt_passes`` passes, with the optimizer it was
    trained with (fresh), its gradient clipping and dropout, one stream at a time."""
    options = model.options
    vocab = Vocabulary(model.vocab.tokens + list(words))
    net = copy.deepcopy(model.net).float()
    grow(net, len(words))
    read = recent(streams, options.adapt_tokens)
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in read])
    batch = model.adapt_batch_size
    task = type(model).task(net, dataclasses.replace(options, batch_size=batch))
    lr = learning_rate(model)
    optimizer = OPTIMIZERS[options.optimizer](net.parameters(), lr=lr)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    net.train()
    steps = 0
    with torch.enable_grad():
        for _ in range(options.adapt_passes):
            task.reset(batch)
            for piece in task.batches(ids, True, rng, (0, 1)):
                loss, n = task.loss(net, piece)
                if n == 0:
                    continue
                optimizer.zero_grad(set_to_none=True)
                (loss / n).backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), options.clip)
                optimizer.step()
                steps += 1
    net.eval()
    learned = {"tokens": int(len(ids)), "documents_read": len(read), "new_words": len(words), "passes": options.adapt_passes, "lr": lr, "steps": steps}
    facts = {**model.facts, "learned": learned}
    return type(model)(vocab, options, net, facts, model.metrics)

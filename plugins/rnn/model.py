"""The recurrent backend: Elman's simple recurrent network (tanh) by default, LSTM or GRU as
options, trained with truncated back-propagation through time on the corpus as one stream."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.distribution import LOG2E
from engine.model import option
from engine.vocab import BOS_ID, EOS_ID
from plugins.neural.base import ROWS, NeuralModel
from plugins.neural.softmax import ANALYSIS_ROWS, OutputLayer, TiedEmbedding
from plugins.neural.options import TrainOptions

CELLS = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
SCORE_CHUNK = 512  # time steps scored at once: bounded memory on long documents
# Hidden states closer than this (every unit) predict the same: the output layer moves a
# log-probability by at most its largest row sum times this (well under 1e-4 nats for trained
# weights), and a state that has forgotten an edit down to 1e-3 reaches 1e-6 a few words later.
STATE_TOLERANCE = 1e-6
# Training defaults by cell. A tanh RNN diverges at the gated cells' lr 20 (PyTorch's
# word_language_model included); on PTB in a 20-minute budget it did best without dropout,
# with bptt 20 (its gradient has faded by 20 steps) and the learning rate decayed linearly to 0
# over the budget (docs/benchmarks.md). The gated cells keep word_language_model's settings
# but the schedule: decayed linearly over the budget too, an LSTM reached 96.6 on PTB test in
# 29 minutes where the plateau rule alone had given 107.5 in 38 (docs/benchmarks.md).
# The Elman's weights are averaged over the last half of the budget (Polyak averaging): PTB test
# 139.02 in 20 minutes on two cores (140.08 on one), where the last weights gave 140.83-141.13;
# untried on the gated cells, which keep their last weights. Its input vectors are tied to the
# adaptive softmax's weights (plugins/neural/softmax.py, TiedEmbedding): 135.79 against 140.70 in
# two runs side by side on one core each, 136.47 alone on two; with 256 units instead of 200
# (1.1M parameters, where the untied 200 had 2.8M), 134.92 on one core and 134.66 alone.
CELL_DEFAULTS = {
    "elman": {"embedding": 256, "hidden": 256, "bptt": 20, "lr": 2.0, "clip": 0.5, "dropout": 0.0, "schedule": "linear", "average": 0.5, "tied": True},
    "gated": {"embedding": 200, "hidden": 200, "bptt": 35, "lr": 20.0, "clip": 0.25, "dropout": 0.2, "schedule": "linear", "average": 0.0, "tied": False},
}


@dataclass
class RNNOptions(TrainOptions):
    cell: str = option("elman", "elman (tanh), lstm or gru")
    embedding: int | None = option(None, "word embedding size (default: hidden's when tied, else the cell's: 256 for elman, 200 for the gated cells)")
    hidden: int | None = option(None, "hidden units a layer (default: the cell's, 256 for elman, 200 for the gated cells)")
    layers: int = option(2, "recurrent layers")
    tied: bool | None = option(None, "share the input embedding and the output layer's weights (needs embedding == hidden; default: the cell's when the sizes match, true for elman, false for the gated cells)")
    softmax: str = option("adaptive", "adaptive (~2.5x faster to train at PTB's vocabulary size) or full")
    # None: the cell's default from CELL_DEFAULTS.
    bptt: int | None = option(None, "steps of truncated back-propagation through time (default: the cell's)")
    lr: float | None = option(None, "learning rate (default: the cell's and optimizer's)")
    clip: float | None = option(None, "gradient-norm clipping (default: the cell's)")
    dropout: float | None = option(None, "dropout share in training (default: the cell's)")
    schedule: str | None = option(None, "plateau or linear (default: the cell's)")
    average: float | None = option(None, "validate and keep the mean of the weights over this last share of the budget (Polyak averaging; default: the cell's, 0.5 for elman, 0 (off) for the gated cells)")

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        defaults = dict(CELL_DEFAULTS["elman" if self.cell == "elman" else "gated"])
        if self.hidden is None:
            self.hidden = defaults["hidden"]
        if self.embedding is None:  # tied (asked for, or the cell's default) needs the hidden size
            self.embedding = self.hidden if (defaults["tied"] if self.tied is None else self.tied) else defaults["embedding"]
        if self.tied is None and self.embedding != self.hidden:
            self.tied = False  # a cell's default, not asked for: the sizes decide
        if self.optimizer == "adam":
            defaults["lr"] = 0.001
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("embedding", "hidden", "layers", "bptt"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.tied and self.embedding != self.hidden:
            raise ValueError("tied embeddings need embedding == hidden")
        self.check()


class RNNNet(nn.Module):
    """Recurrent LM (Elman 1990; Mikolov et al. 2010): embed, recur, softmax at every step."""

    def __init__(self, vocab_size: int, o: RNNOptions):
        super().__init__()
        self.drop = nn.Dropout(o.dropout)
        tied_adaptive = o.tied and o.softmax == "adaptive"
        if not tied_adaptive:
            self.embed = nn.Embedding(vocab_size, o.embedding)
        extra = {"nonlinearity": "tanh"} if o.cell == "elman" else {}
        self.rnn = CELLS[o.cell](o.embedding, o.hidden, o.layers, dropout=o.dropout if o.layers > 1 else 0.0, batch_first=True, **extra)
        self.out = OutputLayer(o.hidden, vocab_size, o.softmax)
        if tied_adaptive:
            self.embed = TiedEmbedding(self.out)
        # Small uniform embeddings and output weights, zero output bias (as PyTorch's
        # word_language_model): N(0, 1) embeddings saturate tanh units at the learning rate SGD needs.
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if o.softmax == "full":
            nn.init.uniform_(self.out.linear.weight, -0.1, 0.1)
            nn.init.zeros_(self.out.linear.bias)
            if o.tied:
                self.out.linear.weight = self.embed.weight

    def features(self, idx: torch.Tensor, hidden=None):
        """The top layer's output at every step, and the hidden state after the last."""
        x = self.drop(self.embed(idx))  # (B, T, E)
        y, hidden = self.rnn(x, hidden)  # (B, T, H)
        return self.drop(y), hidden

    def forward(self, idx: torch.Tensor, hidden=None, targets: torch.Tensor | None = None):
        """(log-probabilities (B, T, V), hidden) or, given targets, (summed loss, hidden)."""
        y, hidden = self.features(idx, hidden)
        return (self.out.log_probs(y) if targets is None else self.out.nll(y, targets)), hidden


def detach(hidden):
    if hidden is None:
        return None
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


class RNNTask:
    """Batches of ``bptt`` steps from ``batch_size`` parallel slices of the stream; the hidden
    state is carried from batch to batch and detached (truncated BPTT)."""

    def __init__(self, net: RNNNet, options: RNNOptions):
        self.net, self.options, self.hidden = net, options, None

    def reset(self, batch_size: int) -> None:
        self.hidden = None

    def batches(self, ids, shuffle, rng, shard):
        rank, world = shard
        data = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        share = len(data) // world
        data = data[rank * share : (rank + 1) * share]
        width = max(1, min(self.options.batch_size, len(data) // 2))
        columns = len(data) // width
        data = data[: columns * width].view(width, columns)  # (B, steps)
        for i in range(0, columns - 1, self.options.bptt):
            n = min(self.options.bptt, columns - 1 - i)
            yield data[:, i : i + n], data[:, i + 1 : i + 1 + n]

    def loss(self, net, batch):
        inputs, targets = batch
        device = next(net.parameters()).device
        inputs, targets = inputs.to(device), targets.to(device)
        targets = targets.masked_fill(targets == BOS_ID, -100)  # <s> is never predicted
        loss, self.hidden = net(inputs, detach(self.hidden), targets)
        return loss, int((targets != -100).sum())


class RNNModel(NeuralModel):
    """Recurrent neural LM: Elman (tanh) by default, LSTM or GRU; truncated BPTT, clipping."""

    name = "rnn"
    Options = RNNOptions
    Net = RNNNet
    Task = RNNTask


    # The state is the hidden state after a token; the distribution it predicts is computed
    # when first asked for, so advancing costs one recurrent step.
    @torch.inference_mode()
    def _step(self, hidden, tokens: list[int]) -> "RNNState":
        y, hidden = self.net.features(torch.tensor([tokens]), _cast(hidden, self.net.embed.weight.dtype))
        return RNNState(hidden, y[0, -1])

    def initial_state(self):
        return self._step(None, [BOS_ID])

    def advance(self, state, token_id: int):
        # Every sentence end is followed by the next sentence's <s>.
        return self._step(state.hidden, [int(token_id), BOS_ID] if token_id == EOS_ID else [int(token_id)])

    def advance_many(self, state, token_ids):
        """Many tokens in one forward pass."""
        sequence = []
        for token in token_ids:
            sequence.append(int(token))
            if token == EOS_ID:
                sequence.append(BOS_ID)
        return self._step(state.hidden, sequence) if sequence else state

    @torch.inference_mode()
    def next_logprobs(self, state) -> np.ndarray:
        if state.logp is None:
            state.logp = self.net.out.log_probs(state.top[None].to(self.net.embed.weight.dtype))[0].numpy()
        return state.logp.copy()

    def states_agree(self, a, b) -> bool:
        """Hidden (and cell) states within STATE_TOLERANCE of each other, every unit."""
        pairs = zip(a.hidden, b.hidden) if isinstance(a.hidden, tuple) else [(a.hidden, b.hidden)]
        return all(float((x - y).abs().max()) <= STATE_TOLERANCE for x, y in pairs)

    def _analysis_net(self) -> RNNNet:
        """A float32 copy of the network for document analysis, where the distribution at
        every position of a document is the cost: float32 halves it (scores move by ~1e-6
        nats; completion and ``score`` keep float64)."""
        if getattr(self, "_net32", None) is None:
            # Everything but the embedding, copied; rows of the float64 embedding are cast as
            # they are looked up (a float32 copy of a large vocabulary's table is 25 MB more).
            net = copy.deepcopy(self.net, memo={id(self.net.embed): nn.Identity()}).float()
            net.embed = _Float32Rows(self.net.embed)
            self._net32 = net
        return self._net32

    def _layers(self, net: RNNNet) -> list[nn.Module]:
        """Each layer of ``net``'s Elman or GRU stack as a one-layer module sharing its weights:
        run one layer at a time over many sentences, every step's output is that layer's state,
        so the states at sentence starts come out of one call per layer."""
        if getattr(self, "_layers32", None) is None:
            rnn, layers = net.rnn, []
            extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
            for l in range(rnn.num_layers):
                one = type(rnn)(rnn.input_size if l == 0 else rnn.hidden_size, rnn.hidden_size, 1, batch_first=True, **extra)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    setattr(one, f"{name}_l0", getattr(rnn, f"{name}_l{l}"))
                layers.append(one.eval())
            self._layers32 = layers
        return self._layers32

    @torch.inference_mode()
    def token_stats_from(self, ids: np.ndarray, state):
        """The recurrence from ``state`` over the sentences (one pass per layer; per sentence
        for an LSTM), then the output layer over all their positions, ANALYSIS_ROWS at a time; float32."""
        ids = np.asarray(ids, dtype=np.int64)
        starts = np.flatnonzero(ids == BOS_ID)
        net = self._analysis_net()
        hidden, top = _cast(state.hidden, torch.float32), state.top.float()
        if isinstance(net.rnn, nn.LSTM):
            features, after = _features_by_sentence(net, ids, starts, hidden, top)
        else:
            features, after = _features_by_layer(self._layers(net), net, ids, starts, hidden, top)
        positions = np.flatnonzero(ids != BOS_ID)
        out = np.full(len(ids), np.nan), np.zeros(len(ids), dtype=np.int64), np.full(len(ids), np.nan)
        if len(features) == 0:
            return (*out, after)
        rows, targets = features, torch.as_tensor(ids[positions])
        for i in range(0, len(rows), ANALYSIS_ROWS):
            logprob, rank, entropy = net.out.target_stats(rows[i : i + ANALYSIS_ROWS], targets[i : i + ANALYSIS_ROWS])
            at = positions[i : i + ANALYSIS_ROWS]
            out[0][at], out[1][at], out[2][at] = logprob.numpy(), rank.numpy(), entropy.numpy() * LOG2E
        return (*out, after)

    def gradient_norms(self, ids: np.ndarray, distance: int = 50, samples: int = 256, seed: int = 0) -> np.ndarray:
        """Mean norm of the gradient of the loss at a step with respect to the hidden state k
        steps earlier, for k = 0..distance (the vanishing gradient, measured). Each sample runs
        ``distance + 1`` tokens of ``ids`` from a zero state one step at a time, keeping every
        step's hidden state (h, all layers), and back-propagates the loss of the word after the
        last; samples start at random positions and run in batches."""
        ids = np.asarray(ids, dtype=np.int64)
        span = distance + 1
        ends = np.flatnonzero(ids[span:] != BOS_ID) + span  # targets: never <s>
        if len(ends) == 0:
            raise ValueError(f"the text needs more than {span} tokens")
        ends = np.random.default_rng(seed).choice(ends, size=min(samples, len(ends)), replace=False)
        net = self.net.eval()
        total = np.zeros(span)
        for start in range(0, len(ends), 64):
            batch = ends[start : start + 64]
            inputs = torch.as_tensor(np.stack([ids[e - span : e] for e in batch]))  # (B, span)
            targets = torch.as_tensor(ids[batch])
            with torch.enable_grad():
                hidden, states = None, []
                for step in range(span):
                    _, hidden = net.rnn(net.embed(inputs[:, step : step + 1]), hidden)
                    h = hidden[0] if isinstance(hidden, tuple) else hidden  # (layers, B, H)
                    h.retain_grad()
                    states.append(h)
                loss = net.out.nll(h[-1], targets)  # the top layer's state; summed, so each sample's gradient is its own
                loss.backward()
            for k, h in enumerate(reversed(states)):
                total[k] += h.grad.pow(2).sum(dim=(0, 2)).sqrt().sum().item()
            net.zero_grad(set_to_none=True)
        return total / len(ends)

    @torch.inference_mode()
    def stream_logprobs(self, ids: np.ndarray):
        """The stream read once, SCORE_CHUNK steps at a time with the hidden state carried; the
        output layer runs ROWS positions at a time (bounded memory at any vocabulary size)."""
        hidden = None
        tokens = torch.as_tensor(ids)[None, :]
        for start in range(0, len(ids), SCORE_CHUNK):
            y, hidden = self.net.features(tokens[:, start : start + SCORE_CHUNK], hidden)
            positions = np.arange(start + 1, min(start + SCORE_CHUNK + 1, len(ids)))
            keep = np.flatnonzero(ids[positions] != BOS_ID)
            for i in range(0, len(keep), ROWS):
                rows = keep[i : i + ROWS]
                yield positions[rows], self.net.out.log_probs(y[0, torch.as_tensor(rows)])


def _features_by_sentence(net: RNNNet, ids: np.ndarray, starts: np.ndarray, hidden, top):
    """The top-layer output that predicts each scored position (in order), and the state after
    each sentence: one forward pass per sentence (an LSTM's cell states are not returned per step)."""
    features, after = [], []
    for start, end in zip(starts, np.append(starts[1:], len(ids))):
        words = ids[start + 1 : end]  # w1 ... wn </s>
        y, hidden = net.features(torch.as_tensor(np.append(words, BOS_ID))[None], hidden)
        features += [top[None], y[0, : len(words) - 1]]  # what predicts w1, then w2 ... </s>
        top = y[0, -1].clone()  # after the next sentence's <s> (a copy: a view keeps all of y)
        after.append(RNNState(hidden, top))
    return (torch.cat(features) if features else torch.zeros(0)), after


def _features_by_layer(layers: list[nn.Module], net: RNNNet, ids: np.ndarray, starts: np.ndarray, hidden, top):
    """As ``_features_by_sentence``, with every sentence in one pass per layer."""
    ends = np.append(starts[1:], len(ids))
    lengths = ends - starts - 1  # w1 ... wn </s> of each sentence
    if len(starts) == 0:
        return torch.zeros(0), []
    sequence = np.concatenate([np.append(ids[s + 1 : e], BOS_ID) for s, e in zip(starts, ends)])  # ... </s> <s> per sentence
    offsets = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])  # where each sentence's w1 is in it
    boundaries = offsets + lengths  # its closing <s>: the state after the sentence
    x = net.embed(torch.as_tensor(sequence)[None])  # (1, T, E)
    outputs = []
    for l, layer in enumerate(layers):
        x, _ = layer(x, hidden[l : l + 1])
        outputs.append(x[0])  # (T, H)
    states = torch.stack([o[torch.as_tensor(boundaries)] for o in outputs], dim=1)  # (sentences, layers, H)
    # Views of ``states`` only (a layer's output is its state): a view of ``outputs`` would keep
    # every position's output alive as long as the analysis.
    after = [RNNState(states[j][:, None, :], states[j, -1]) for j in range(len(starts))]
    candidates = torch.cat([top[None], outputs[-1]])  # row 0: the state given; row 1 + t: after step t
    first = np.concatenate([[0], 1 + boundaries[:-1]])
    rows = np.concatenate([np.concatenate([[f], 1 + o + np.arange(n - 1)]) for f, o, n in zip(first, offsets, lengths)])
    return candidates[torch.as_tensor(rows)], after


class _Float32Rows(nn.Module):
    """An embedding looked up in its own precision and handed on in float32."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        object.__setattr__(self, "table", embedding)  # not a submodule: .float() never reaches it

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx).float()


def _cast(hidden, dtype):
    """A hidden state (a tensor, or LSTM's pair) in ``dtype`` (analysis states are float32)."""
    if hidden is None or isinstance(hidden, torch.Tensor):
        return hidden if hidden is None or hidden.dtype == dtype else hidden.to(dtype)
    return tuple(_cast(h, dtype) for h in hidden)


class RNNState:
    """The hidden state after a token, the top layer's output (what predicts the next token)
    and, once asked for, that distribution."""

    __slots__ = ("hidden", "top", "logp")

    def __init__(self, hidden, top):
        self.hidden, self.top, self.logp = hidden, top, None

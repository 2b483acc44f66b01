"""Typed configuration, loaded from TOML (after litgpt's ``args.py``).

Every field is documented on its line; an invalid value raises ``ConfigError`` naming the field
and what is allowed. ``load_config(path, overrides=["train.lr=0.01"])`` applies ``--set`` overrides;
a key that does not exist is an error, not a silent no-op.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

import tomli_w
import tomllib
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from hydrarec.errors import ConfigError
from hydrarec.settings import overrides

# The names of the parts' registries, written once: config.py imports no part, so each part's
# registry pairs these names with its classes (architectures/__init__.py, encoders/sequence.py).
ArchitectureName: TypeAlias = Literal["single", "shared_bottom", "mmoe", "ple", "aitm"]
SequenceKind: TypeAlias = Literal["transformer", "gru", "lstm", "hstu"]  # history encoders

# the longest history window a sequence encoder may read: public SASRec / BERT4Rec / HSTU setups
# use 50 to a few hundred items, and long-sequence work stays within a few thousand
MAX_SEQUENCE_LEN = 4096


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated, and
    floats are finite (TOML reads ``inf`` and ``nan``; no field means anything by them)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SplitConfig(Section):
    kind: Literal["random", "leave_last_out", "temporal", "cold_item", "cold_user", "given"] = (
        "leave_last_out"  # how interactions are divided into train / valid / test
    )
    valid_ratio: float = Field(0.1, ge=0.0, lt=1.0)  # random / temporal / cold: share for valid
    test_ratio: float = Field(0.1, ge=0.0, lt=1.0)  # random / temporal / cold: share for test
    given: str | None = None  # kind="given": a split shipped with the data, e.g. "u1" (MovieLens)
    # kind="given" without a valid part: valid = each user's last train interaction ("last"), or
    # a random valid_ratio of train ("random": for random folds such as MovieLens u1..u5)
    given_valid: Literal["last", "random"] = "last"
    seed: int = 42  # seed of the random, cold-item and cold-user splits


class TabularConfig(Section):
    interactions: str | None = None  # CSV / Parquet of all interactions (split by [data.split])
    train: str | None = None  # or explicit files split by the user: train ...
    valid: str | None = None  # ... valid (optional: carved from train when missing) ...
    test: str | None = None  # ... and test
    users: str | None = None  # optional users table (user_id + features)
    items: str | None = None  # optional items table (item_id + features)
    user_id: str = "user_id"  # name of the user id column in the files
    item_id: str = "item_id"  # name of the item id column in the files
    timestamp: str | None = "timestamp"  # name of the timestamp column (None: no time)
    labels: dict[str, Literal["regression", "binary"]] = {}  # feedback column -> kind
    user_features: dict[str, Literal["categorical", "numeric", "multi_hot", "text"]] = {}
    item_features: dict[str, Literal["categorical", "numeric", "multi_hot", "text"]] = {}
    sep: str = ","  # field separator of CSV files
    multi_hot_sep: str = "|"  # token separator inside a multi-hot cell
    encoding: str = "utf-8"  # text encoding of CSV files


class SequencesConfig(Section):
    # one user a line, "user item item ...", oldest first (S3-Rec's format); a relative path is
    # taken from data.path alone when set, else $HYDRAREC_DATA_DIR, the cache, the current folder
    file: str | None = None
    # JSON {item: [attribute ids]} -> the item feature "attributes" (None or "": no such file)
    item_attributes: str | None = None
    sep: str | None = None  # field separator (None: any whitespace)


class SyntheticConfig(Section):
    n_users: int = Field(1000, ge=1)  # users generated
    n_items: int = Field(500, ge=1)  # items generated
    n_interactions: int = Field(20_000, ge=1)  # interactions generated
    dim: int = Field(8, ge=1)  # dimension of the planted latent factors
    n_topics: int = Field(8, ge=1)  # latent topics that drive item text and genres
    task_correlation: float = Field(0.8, ge=-1.0, le=1.0)  # correlation of the feedback types
    seed: int = 0  # generator seed


class DataConfig(Section):
    dataset: Literal[
        "movielens-100k",
        "movielens-1m",
        "movielens-latest-small",
        "synthetic",
        "tabular",
        "sequences",
    ] = "movielens-100k"  # which loader reads the data
    path: str | None = None  # folder of the files; default: $HYDRAREC_DATA_DIR, then the cache
    split: SplitConfig = SplitConfig()
    tabular: TabularConfig = TabularConfig()  # dataset="tabular": files and schema
    sequences: SequencesConfig = SequencesConfig()  # dataset="sequences": the file(s)
    synthetic: SyntheticConfig = SyntheticConfig()  # dataset="synthetic": generator settings
    duplicates: Literal["keep_last", "mean", "error"] = "keep_last"  # same (user, item, time)
    min_user_interactions: int = Field(0, ge=0)  # drop users with fewer interactions
    # train from Parquet row groups through a shuffle buffer, never the whole file in memory
    # (dataset="tabular"; what it supports: docs/distributed.md, "Streaming data")
    streaming: bool = False
    buffer_rows: int = Field(1_000_000, ge=1)  # streaming: rows of the shuffle buffer, per rank

    @model_validator(mode="after")
    def _sequences_file(self) -> DataConfig:
        if self.dataset == "sequences" and not self.sequences.file:
            raise ValueError(
                "data.dataset = 'sequences' needs the file; add under [data.sequences]: "
                'file = "folder/Name.txt"'
            )
        return self


class FeaturesConfig(Section):
    user: list[str] | None = None  # user side features to use (None: all in the schema)
    item: list[str] | None = None  # item side features to use (None: all in the schema)
    numeric: Literal["standardize", "bucketize"] = "standardize"  # numeric feature encoding
    n_buckets: int = Field(10, ge=2)  # numeric="bucketize": quantile buckets
    min_count: int = Field(1, ge=1)  # categorical values rarer than this in train become OOV
    max_tokens: int = Field(32, ge=1)  # multi-hot: tokens kept per row


class SequenceConfig(Section):
    kind: Literal["none"] | SequenceKind = "transformer"  # history encoder ("none": no history)
    # the user's most recent items read. At most MAX_SEQUENCE_LEN: histories are padded to it in
    # memory (users x max_len) and attention grows with its square (issue 21: 10,000,000 grew to
    # 23 GB before it was killed)
    max_len: int = Field(50, ge=1, le=MAX_SEQUENCE_LEN)
    layers: int = Field(2, ge=1)  # transformer blocks / recurrent layers
    heads: int = Field(2, ge=1)  # attention heads (transformer)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout inside the sequence encoder
    # transformer: learned "absolute" embeddings of the places in the window, or a "relative"
    # attention bias per distance back from the query (the same state at every window position)
    positions: Literal["absolute", "relative"] = "absolute"


class TextConfig(Section):
    enabled: bool = False  # add a pretrained language model's text vector to the item tower
    model: str = "all-MiniLM-L6-v2"  # the default packaged model, or a local HF model directory
    template: str = "{title}"  # item text, formatted from item columns
    batch_size: int = Field(64, ge=1)  # texts encoded per batch
    id_dropout: float = Field(0.0, ge=0.0, le=1.0)  # share of items whose id embedding is dropped
    cache_dir: str | None = None  # where encoded text is cached (default ~/.cache/hydrarec/text)
    finetune_layers: int = Field(0, ge=0)  # last transformer layers trained (0: frozen; GPU)
    finetune_lr: float = Field(2e-5, gt=0.0)  # learning rate of those layers (AdamW)


class ArchitectureConfig(Section):
    name: ArchitectureName = "mmoe"  # task sharing
    hidden: list[PositiveInt] = [128]  # shared-bottom / expert MLP widths
    experts: int = Field(4, ge=1)  # MMoE experts; PLE shared experts per level
    task_experts: int = Field(1, ge=1)  # PLE: task-specific experts per task and level
    levels: int = Field(2, ge=1)  # PLE: extraction levels
    tower: list[PositiveInt] = [64]  # per-task tower widths after sharing
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout in experts and towers


class AutoRecConfig(Section):
    """An AutoRec path of the rating task (Sedhain et al. 2015; ``encoders/autorec.py``, issue 8):
    ``model.autorec`` encodes items' ratings (I-AutoRec), ``model.user_autorec`` users' (U-)."""

    hidden: int = Field(0, ge=0)  # K, hidden units of the autoencoder (0: no such path)
    # training: each item's bag leaves out the batch's own ratings (false: the paper's way, the
    # input holds the ratings the output is trained on)
    leave_out: bool = True
    input_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # share of a bag's ratings dropped (train)
    # the paper's L2: l2 * (||V||^2 + ||W||^2) added to each batch's (mean) loss, as a gradient
    l2: float = Field(0.0, ge=0.0)
    lr: float | None = Field(None, gt=0.0)  # the block's own AdamW learning rate (None: train.lr)


class ModelConfig(Section):
    dim: int = Field(64, ge=1)  # user / item representation size D
    embedding_dim: int = Field(32, ge=1)  # side-feature embedding size
    multi_hot_pooling: Literal["mean", "sum"] = "mean"  # pooling of multi-hot embeddings
    tower_hidden: list[PositiveInt] = [128]  # MLP widths of the user / item towers
    # what the architecture reads per (user, item) pair: [u, i, u * i] (3D wide) or [u, i] (2D)
    pair_input: Literal["concat_product", "concat"] = "concat_product"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout in the towers
    # the user tower reads a learned vector per user id; false: a user is their history and side
    # features alone (as in SASRec), so nothing is fitted per user and short histories generalise
    user_ids: bool = True
    sequence: SequenceConfig = SequenceConfig()
    text: TextConfig = TextConfig()
    architecture: ArchitectureConfig = ArchitectureConfig()
    autorec: AutoRecConfig = AutoRecConfig()  # I-AutoRec rating path (hidden > 0 turns it on)
    user_autorec: AutoRecConfig = AutoRecConfig()  # U-AutoRec rating path (hidden > 0 turns it on)
    # a deep ensemble of this many copies, trained together, each from its own initial weights:
    # retrieval scores summed (one dot product over the concatenated vectors), predictions
    # averaged (model/ensemble.py); K times the training and scoring work
    ensemble: int = Field(1, ge=1, le=16)


class TaskSection(Section):
    """What every ``[[tasks]]`` entry has; each kind is a class below, picked by ``kind``, so a
    field of another kind is an error that names it (issue 23)."""

    name: str  # unique task name, the key of its metrics (e.g. "like" -> "like/auc")
    kind: str  # what the task learns: retrieval, rating, binary or reconstruction
    weight: float = Field(1.0, ge=0.0)  # static loss weight

    # validation's metric names without the "task/" prefix, in the order evaluation reports them
    # ("{k}": once per cut-off of eval.ks), each True where higher is better
    metrics: ClassVar[dict[str, bool]]
    headline: ClassVar[str]  # what train.monitor defaults to when the task comes first
    # a pointwise task learned from a label per interaction (its column or rule); the
    # architecture gives it a tower
    labelled: ClassVar[bool] = False
    # the fields of which one must be set, and the line to add when none is (issue 22)
    needs: ClassVar[tuple[tuple[str, ...], str]] = ((), "")

    @model_validator(mode="after")
    def _needs(self) -> TaskSection:
        fields, line = self.needs
        if fields and not any(getattr(self, f) for f in fields):
            wanted = " or ".join(f"'{f}'" for f in fields)
            raise ValueError(
                f"task {self.name!r}: kind {self.kind!r} needs {wanted}; add to it: {line}"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _flat_entry(cls, data: Any) -> Any:
        """A run written before tasks had a class a kind holds every kind's fields in each entry
        (``dump_config`` wrote them all): it is read as an entry of its own kind. Such an entry
        has both retrieval's ``temperature`` and reconstruction's ``entity``; no entry of one
        kind has both."""
        if isinstance(data, dict) and {"temperature", "entity"} <= data.keys():
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data

    def validation_metrics(self, ks: list[int], split: str) -> list[str]:
        """The ``task/metric`` keys validation produces under ``eval.ks`` and a split kind."""
        return [f"{self.name}/{m}" for m in self.metrics]


class RetrievalTaskConfig(TaskSection):  # tasks/retrieval.py
    kind: Literal["retrieval"] = "retrieval"
    negatives: int = Field(0, ge=0)  # sampled negatives per batch, added to in-batch ones
    sampler: Literal["uniform", "popularity"] = "popularity"  # negative sampler
    alpha: float = Field(0.75, ge=0.0)  # popularity sampler exponent
    logq: bool = True  # logQ correction of sampled softmax
    # None: full softmax when the catalogue <= 5000 items and no negatives are sampled
    full_softmax: bool | None = None
    temperature: float = Field(0.1, gt=0.0)  # softmax temperature on dot products
    gather_negatives: bool = False  # DDP: negatives from every rank's batch (all-gather)
    # a user's own items (its history; in window training its whole window) are not its
    # negatives: masked out of its softmax, as recommendations leave them out of the ranking
    exclude_own_items: bool = False

    @model_validator(mode="after")
    def _one_softmax(self) -> RetrievalTaskConfig:
        if self.full_softmax and self.negatives:
            raise ValueError(
                f"task {self.name!r}: full_softmax = true ranks every item, so negatives must"
                f" be 0 (got {self.negatives}); set negatives = 0 or full_softmax = false"
            )
        return self

    def softmax_over_catalogue(self, n_items: int, auto_max_items: int) -> bool:
        """Whether the softmax runs over every item: ``full_softmax``, or when it is None, a
        catalogue of at most ``auto_max_items`` with no sampled negatives."""
        if self.full_softmax is not None:
            return self.full_softmax
        return n_items <= auto_max_items and self.negatives == 0

    # ranking metrics (``tasks/metrics.py``); recall@k on a cold-item split only
    metrics: ClassVar[dict[str, bool]] = dict.fromkeys(
        ("hr@{k}", "ndcg@{k}", "mrr@{k}", "recall@{k}"), True
    )
    headline: ClassVar[str] = "ndcg@10"

    def validation_metrics(self, ks: list[int], split: str) -> list[str]:
        # a cold-item split ranks the held-out items among themselves, which adds recall@k
        # (``evaluation.evaluate.held_out_ranking``)
        names = [m for m in self.metrics if m != "recall@{k}" or split == "cold_item"]
        return [f"{self.name}/{m.format(k=k)}" for k in dict.fromkeys(ks) for m in names]


class LabelledTask(TaskSection):
    """A pointwise task learned from a label per interaction: a column as it is or, where the
    kind allows one, a rule on a column (``data/labels.py`` reads both)."""

    column: str | None = None  # the label column
    labelled: ClassVar[bool] = True
    label_values: ClassVar[tuple[float, ...] | None] = None  # the labels allowed; None: any

    def label_rule(self) -> str:
        """The rule that makes the label from a column ("" for none)."""
        return ""


class RatingTaskConfig(LabelledTask):  # tasks/rating.py
    kind: Literal["rating"] = "rating"
    mf_paths: bool = False  # add user / item bias and dot-product paths (biased MF) to the head
    # with model.autorec / model.user_autorec: the weights a, b of those paths in the prediction
    # (1 - a - b) * head + a * item autoencoder + b * user autoencoder (a + b <= 1)
    autorec_weight: float = Field(0.5, ge=0.0, le=1.0)
    user_autorec_weight: float = Field(0.25, ge=0.0, le=1.0)

    metrics: ClassVar[dict[str, bool]] = {"rmse": False, "mae": False}
    headline: ClassVar[str] = "rmse"
    needs = (
        ("column",),
        'column = "rating" (your regression label, declared in [data.tabular] labels)',
    )


class BinaryTaskConfig(LabelledTask):  # tasks/binary.py
    kind: Literal["binary"] = "binary"
    rule: str | None = None  # instead of a 0/1 column, a rule on a column, e.g. "rating >= 4"

    metrics: ClassVar[dict[str, bool]] = {"auc": True, "gauc": True, "logloss": False}
    headline: ClassVar[str] = "auc"
    label_values: ClassVar[tuple[float, ...] | None] = (0.0, 1.0)
    needs = (("column", "rule"), 'column = "click" (a 0/1 label) or rule = "rating >= 4"')

    def validation_metrics(self, ks: list[int], split: str) -> list[str]:
        # GAUC is undefined where each user has one validation interaction (leave_last_out),
        # and evaluation drops an undefined metric
        names = super().validation_metrics(ks, split)
        return [n for n in names if not (split == "leave_last_out" and n.endswith("/gauc"))]

    def label_rule(self) -> str:
        return self.rule or ""


class ReconstructionTaskConfig(TaskSection):  # tasks/reconstruction.py
    kind: Literal["reconstruction"] = "reconstruction"
    entity: Literal["user", "item"] = "item"  # whose features
    feature: str | None = None  # which feature column (required)
    loss: Literal["mse", "bce"] = "bce"  # reconstruction loss

    metrics: ClassVar[dict[str, bool]] = {"loss": False}
    headline: ClassVar[str] = "loss"
    needs = (("feature",), 'feature = "genres" (a categorical or multi-hot column, or "numeric")')


# one ``[[tasks]]`` entry: the class its ``kind`` names
TaskConfig: TypeAlias = Annotated[
    RetrievalTaskConfig | RatingTaskConfig | BinaryTaskConfig | ReconstructionTaskConfig,
    Field(discriminator="kind"),
]
# kind -> its class: the task kinds, written once (``hydrarec.tasks.TASKS`` builds on them)
TASK_KINDS: dict[str, type[TaskSection]] = {
    cls.model_fields["kind"].default: cls for cls in typing.get_args(typing.get_args(TaskConfig)[0])
}


class LossConfig(Section):
    weighting: Literal["static", "uncertainty", "dwa", "gradnorm"] = "static"  # joint loss
    dwa_temperature: float = Field(2.0, gt=0.0)  # DWA softness
    gradnorm_alpha: float = Field(1.5, ge=0.0)  # GradNorm restoring force


class TrainConfig(Section):
    epochs: int = Field(20, ge=1)  # maximum epochs
    batch_size: int = Field(1024, ge=1)  # interactions per batch (examples="windows": windows)
    # a training example: one interaction row with the history before it ("rows"), or (SASRec)
    # a window of model.sequence.max_len items whose every position predicts the next ("windows")
    examples: Literal["rows", "windows"] = "rows"
    window_stride: int | None = Field(None, ge=1)  # windows: targets per window (None: max_len)
    # windows: each batch holds windows of similar lengths, so a batch of short sequences runs
    # at its own width, not the longest window's (the batches are still drawn at random)
    length_buckets: bool = False
    # windows, attention encoders: a batch's short windows share rows (packed one after another,
    # each reading only itself), so the encoder runs on the batch's items, not on its padding;
    # the same states as unpacked (on Amazon Beauty, ~9 items a user in windows of 50: 1/5 of
    # the places)
    pack_windows: bool = False
    lr: float = Field(3e-3, gt=0.0)  # AdamW learning rate
    weight_decay: float = Field(1e-4, ge=0.0)  # AdamW weight decay
    warmup: float = Field(0.05, ge=0.0, lt=1.0)  # share of steps of linear warm-up, then cosine
    grad_clip: float = Field(1.0, ge=0.0)  # max gradient norm (0: no clipping)
    # embedding tables updated sparsely by SparseAdam (only the batch's rows, no weight decay):
    # true every table, false none, unset those of >= 100,000 rows (see training/sparse.py)
    sparse_embeddings: bool | None = None
    patience: int = Field(3, ge=1)  # epochs without validation improvement before stopping
    monitor: str | None = None  # validation metric for early stopping (default: first task's)
    seed: int = 0  # seed of everything random in training
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where to train
    amp: bool = True  # bf16 autocast on CUDA
    num_workers: int = Field(0, ge=0)  # reserved: batches are assembled in-process
    # batches assembled ahead by a background thread (0: in the training loop). Pays where
    # assembly is heavy (1M synthetic, batch 1,024: +10-15 %), costs where steps are small
    # (ML-100K, batch 512: -12 %, GIL contention); see training/prefetch.py
    prefetch: int = Field(0, ge=0)
    eval_every: int = Field(1, ge=1)  # epochs between validations
    # after selecting on valid, train again from scratch on train + valid for the selected
    # number of epochs (same seed and schedule) and score test with that model; the selection
    # run is kept in RUN/selection (what the benchmark's peers get: "refit on train + valid")
    refit: bool = False


class EvalConfig(Section):
    ks: list[PositiveInt] = Field([10, 20], min_length=1)  # cut-offs of ranking metrics
    batch_size: int = Field(256, ge=1)  # users scored at once in full ranking


class RecommendConfig(Section):
    candidates: int = Field(200, ge=1)  # stage one: items retrieved by the user vector
    blend: dict[str, float] = {}  # stage two: task -> exponent, e.g. {like = 1, rating = 0.5}
    exclude_seen: bool = True  # drop items the user interacted with
    index: Literal["exact", "faiss_hnsw", "faiss_ivf"] = "exact"  # item index


class Config(Section):
    data: DataConfig = DataConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    tasks: list[TaskConfig] = []
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    recommend: RecommendConfig = RecommendConfig()

    @model_validator(mode="after")
    def _unique_tasks(self) -> Config:
        names = [t.name for t in self.tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"task names must be unique; repeated: {sorted(dup)}")
        if not self.tasks:
            raise ValueError(
                "at least one [[tasks]] entry is required; add: [[tasks]], then on its own "
                'lines name = "retrieval" and kind = "retrieval"'
            )
        return self

    @model_validator(mode="after")
    def _autorec(self) -> Config:
        """AutoRec paths belong to one rating task (``encoders/autorec.py``)."""
        on = [k for k in ("autorec", "user_autorec") if getattr(self.model, k).hidden]
        if not on:
            return self
        field = f"model.{on[0]}.hidden > 0"
        ratings = [t.name for t in self.tasks if t.kind == "rating"]
        if len(ratings) != 1:
            raise ValueError(
                f"{field} needs exactly one rating task (its train labels fill the bags), "
                f"found {len(ratings)}: {ratings}"
            )
        retrieval = [t.name for t in self.tasks if t.kind == "retrieval"]
        if retrieval:
            raise ValueError(
                f"{field} cannot be combined with a retrieval task ({retrieval}): the AutoRec "
                "blocks are part of the user and item vectors, so retrieval scores would include "
                "them; remove the task or set hidden = 0"
            )
        needs = {"data.streaming": (self.data.streaming, "false (the train ratings in memory)"),
                 "train.examples": (self.train.examples != "rows", "'rows'")}  # fmt: skip
        for name, (bad, allowed) in needs.items():
            if bad:
                raise ValueError(f"{field} needs {name} = {allowed}")
        task = next(t for t in self.tasks if t.kind == "rating")
        used = {f"{k}_weight": getattr(task, f"{k}_weight") for k in on}
        if sum(used.values()) > 1.0:
            raise ValueError(f"task {task.name!r}: its AutoRec path weights sum past 1: {used}")
        return self

    @model_validator(mode="after")
    def _streaming(self) -> Config:
        """What streaming cannot do: it never holds a user's whole log (issue 7)."""
        d = self.data
        if not d.streaming:
            return self
        problems = {
            "data.dataset": (d.dataset != "tabular", "'tabular' (Parquet files)"),
            "data.split.kind": (
                d.split.kind not in ("random", "given"),
                "'random' (a hash of user and item carves valid / test out of "
                "tabular.interactions) or 'given' (tabular.train / valid / test files)",
            ),
            "model.sequence.kind": (
                self.model.sequence.kind != "none",
                "'none' (a history encoder needs each user's log in time order)",
            ),
            "train.examples": (self.train.examples != "rows", "'rows'"),
            "data.min_user_interactions": (d.min_user_interactions > 1, "0 or 1"),
            "train.refit": (self.train.refit, "false (a refit re-splits the data in memory)"),
        }
        for name, (bad, allowed) in problems.items():
            if bad:
                raise ValueError(f"data.streaming = true needs {name} = {allowed}")
        return self

    @model_validator(mode="after")
    def _windows(self) -> Config:
        seq, stride = self.model.sequence, self.train.window_stride
        if self.train.examples == "windows" and seq.kind == "none":
            raise ValueError(
                "train.examples = 'windows' trains a history encoder at every position; set "
                "model.sequence.kind to transformer, hstu, gru or lstm (not 'none')"
            )
        if self.train.pack_windows and seq.kind in ("gru", "lstm"):
            raise ValueError(
                f"train.pack_windows = true needs an attention encoder (model.sequence.kind "
                f"transformer or hstu), not {seq.kind!r}: set train.pack_windows = false"
            )
        if self.train.examples == "windows" and stride is not None and stride > seq.max_len:
            raise ValueError(
                f"train.window_stride {stride} > model.sequence.max_len {seq.max_len} "
                "(allowed: 1 .. max_len)"
            )
        return self

    @model_validator(mode="after")
    def _monitor(self) -> Config:
        """The monitored metric is one that validation produces (else training stops at the first
        validation, issue 21)."""
        produced = validation_metrics(self)
        name = self.train.monitor
        if name is None and default_monitor(self) not in produced:
            raise ValueError(
                f"train.monitor is unset, so it defaults to {default_monitor(self)!r}, which "
                f"eval.ks = {self.eval.ks} does not produce; set train.monitor (allowed: "
                f"{', '.join(produced)}) or add its cut-off to eval.ks"
            )
        if name is not None and name not in produced:
            raise ValueError(
                f"train.monitor = {name!r} is not a validation metric of these tasks and "
                f"eval.ks (allowed: {', '.join(produced)})"
            )
        return self

    @model_validator(mode="after")
    def _blend(self) -> Config:
        """Stage two multiplies predictions: only rating and binary tasks have one."""
        allowed = [t.name for t in self.tasks if t.labelled]
        for name in self.recommend.blend:
            if name not in allowed:
                raise ValueError(
                    f"recommend.blend: {name!r} is not a rating or binary task (allowed: {allowed})"
                )
        return self


def validation_metrics(cfg: Config) -> list[str]:
    """Every ``task/metric`` key validation can produce under ``cfg`` (each kind says its own)."""
    return [m for t in cfg.tasks for m in t.validation_metrics(cfg.eval.ks, cfg.data.split.kind)]


def default_monitor(cfg: Config) -> str:
    """The metric early stopping follows when ``train.monitor`` is unset: the first task's
    headline metric."""
    first = cfg.tasks[0]
    return f"{first.name}/{first.headline}"


def monitor_of(cfg: Config) -> tuple[str, str]:
    """The metric early stopping follows and whether it is maximised ("max") or minimised
    ("min"): ``train.monitor``, else ``default_monitor``."""
    name = cfg.train.monitor or default_monitor(cfg)
    task_name, _, metric = name.rpartition("/")
    task = next(t for t in cfg.tasks if t.name == task_name)  # the config checked the name
    return name, "max" if task.metrics[re.sub(r"@\d+$", "@{k}", metric)] else "min"


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        loc, msg = list(e["loc"]), e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        if loc[:1] == ["tasks"] and len(loc) > 2 and loc[2] in TASK_KINDS:  # the kind's class
            kind = str(loc.pop(2))
            if e["type"] == "extra_forbidden":
                allowed = ", ".join(TASK_KINDS[kind].model_fields)
                msg = f"unknown key for a task of kind {kind!r} (allowed: {allowed})"
        elif e["type"].startswith("union_tag_"):  # the kind is missing or none of them
            loc.append("kind")
            kinds = ", ".join(map(repr, TASK_KINDS))
            got = e.get("ctx", {}).get("tag")
            msg = f"{'missing' if got is None else f'unknown kind {got!r}'} (allowed: {kinds})"
        lines.append(f"  {'.'.join(map(str, loc)) or '(top level)'}: {msg}")
    return "\n".join(lines)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set`` override (``section.key=value``; ``tasks.NAME.key=value`` addresses the
    task called NAME) to a raw config dict, in place (``hydrarec.settings.overrides``)."""
    overrides.apply_override(raw, assignment, Config)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a TOML config, apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}), as TOML must be") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for o in overrides or []:
        apply_override(raw, o)
    return config_from_dict(raw, str(path))


def dump_config(config: Config) -> str:
    """The resolved config as TOML (written to every run as ``config.toml``); None values, which
    TOML cannot write, are left out (they load back as the field's default)."""
    return tomli_w.dumps(config.model_dump(exclude_none=True))

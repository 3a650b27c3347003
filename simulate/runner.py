"""Replays gold labels through the active-learning loop and records what every iteration cost.

Per seed: a seed set is labeled (opening with the cold-start order, the rest at random); then,
each iteration t = 0..N, the acquisition model is trained from scratch on the labeled set L_t,
the successors are trained on L_t (and, with PLASM, again on L_t + filtered pseudo-labels) and
evaluated on the test set; for t < N the acquisition model scores the pool (full, UPS or random
subsampling, through al_core.loop.run_round, the function the live backend's worker calls) and
the query is taken as the backend serves it: the ranking in the team's serving order (or the
cold-start order while labels are fewer than cold_start_labels), with the audit tasks in their
places. Its gold labels join L_{t+1}.

Results: results.jsonl in the run's folder, one record per seed x iteration x successor,
written one iteration at a time. A killed run resumes: finished (seed, iteration) pairs are
skipped; the labeled set is rebuilt from the ids saved in the records and the score cache from
the checkpoint written after each iteration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from al_core.acquisition import audited_query, fit_with_estimate, is_audit_task, without_audit
from al_core.data import Example
from al_core.kinds import TaskKind, kind_of
from al_core.loop import keep_encoder
from al_core.models.embedding_cache import MemoryEmbeddingCache
from al_core.ordering import cold_start_tasks
from al_core.ups import CachedScore, InMemoryScoreCache, PoolSubsampler, SubsamplingConfig, ups_premise
from simulate import successors as model_factory
from simulate.config import ConfigError, SimulationConfig, expand_path

RESULTS = "results.jsonl"
CONFIG_COPY = "config.yaml"
SETTINGS_FILE = "settings.json"  # the values in force, the engine's defaults included
STATE_DIR = "state"


@dataclass
class SimulationData:
    """The pool (gold kept aside), the test set and the label set."""

    kind: str
    labels: list[str]
    gold: dict[str, Example]  # pool id -> example with its gold label
    pool: list[Example]  # the same examples without labels, in a fixed order
    test: list[Example]
    task_kind: TaskKind = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.task_kind = kind_of(self.kind)

    @property
    def pool_words(self) -> int:
        return sum(e.n_words for e in self.pool)


def load_data(config: SimulationConfig) -> SimulationData:
    """Reads the dataset, splits off a test set if needed and subsamples pool and test (split_seed)."""
    from al_core import readers
    from simulate.datasets import shared_dataset

    ds = config.dataset
    if ds.name:
        root = expand_path(ds.root) if ds.root else None  # None: $AL_SHARED_DATA or ../shared/data
        pool_set = shared_dataset(ds.name, ds.pool_split, root)
        test_set = shared_dataset(ds.name, ds.test_split, root) if ds.test_split else None
    else:
        pool_set = readers.read_dataset(expand_path(ds.pool_path), format=ds.format, **ds.options)
        test_set = (
            readers.read_dataset(expand_path(ds.test_path), format=ds.format, **ds.options)
            if ds.test_path
            else None
        )
    rng = np.random.default_rng(ds.split_seed)
    pool_examples = [e for e in pool_set.examples if e.is_labeled]
    if test_set is None:
        if ds.test_size >= len(pool_examples):
            raise ConfigError(
                f"dataset.test_size {ds.test_size} leaves no pool ({len(pool_examples)} labeled rows)"
            )
        order = rng.permutation(len(pool_examples))
        test_examples = [pool_examples[i] for i in sorted(order[: ds.test_size])]
        pool_examples = [pool_examples[i] for i in sorted(order[ds.test_size :])]
    else:
        test_examples = [e for e in test_set.examples if e.is_labeled]
    limit = ds.test_limit or ds.test_size
    if limit and len(test_examples) > limit:
        test_examples = [test_examples[i] for i in sorted(rng.permutation(len(test_examples))[:limit])]
    if ds.pool_size and len(pool_examples) > ds.pool_size:
        pool_examples = [
            pool_examples[i] for i in sorted(rng.permutation(len(pool_examples))[: ds.pool_size])
        ]
    ids = [e.id for e in pool_examples]
    if len(set(ids)) != len(ids):
        raise ConfigError("the pool has duplicate task ids; give the reader an id column")
    labels = list(pool_set.labels)
    labels += [label for label in (test_set.labels if test_set else []) if label not in labels]
    return SimulationData(
        kind=pool_set.kind,
        labels=labels,
        gold={e.id: e for e in pool_examples},
        pool=[e.without_labels() for e in pool_examples],
        test=test_examples,
    )


def evaluate(model, test: list[Example]) -> dict:
    """The kind's report on the whole test set (TaskKind.report): its headline (macro F1;
    strict span F1 for tagging), its other measures (accuracy, micro F1) and the per-label table
    over every label of the model."""
    kind = model.task_kind
    predicted = model.predict([e.without_labels() for e in test])
    return kind.report([kind.gold(e) for e in test], predicted, kind.config_labels(list(model.labels)))


def _scored(prefix: str, report: dict) -> dict:
    """A record's score columns: the headline as <prefix>_score, the other measures by name, and
    <prefix>_recall: label -> recall on the test set."""
    scores = report["figures"]
    main, *others = scores
    return {
        f"{prefix}_score": scores[main],
        **{f"{prefix}_{name}": scores[name] for name in others},
        f"{prefix}_recall": {label: row["recall"] for label, row in report["per_label"].items()},
    }


def _estimates(quality) -> dict:
    """A record's estimate columns: the cross-validated / held-out one (quality_estimate, on tasks
    active learning chose) and the audit one with its 95% interval; the truth is acquisition_score."""
    audit = quality.audit or {}
    return {
        "quality_estimate": quality.value,
        "quality_n": quality.n,
        "audit_estimate": audit.get("value"),
        "audit_low": audit.get("low"),
        "audit_high": audit.get("high"),
        "audit_accuracy": audit.get("accuracy"),
        "audit_n": audit.get("n", 0),
    }


def has_encoder(config: SimulationConfig) -> bool:
    """Whether the acquisition model has an encoder whose vectors the orders read (a transformer)."""
    return config.acquisition.kind == "transformer"


def order_vectors(config: SimulationConfig, data: SimulationData, cache) -> Callable | None:
    """`vectors_of(examples)` for the orders (al_core.ordering): the acquisition model's frozen
    encoder, one vector per task (al_core.models.encoder_vectors), whether the acquisition model is
    frozen or fine-tuned; with the run's embedding cache, which a frozen acquisition model fills
    under the same keys. None for a classical acquisition model: it has no encoder, and the seed set
    and the queries are then taken as if team_size were 1 and cold_start_labels 0."""
    if not has_encoder(config):
        return None
    from al_core.models import encoder_vectors

    spec = config.acquisition

    training = model_factory.training_config(spec, config.training, seed=0)
    return encoder_vectors(data.kind, expand_path(spec.model), data.labels, training, cache)


def take_amount(ordered: list[str], amount: int, in_words: bool, n_words: dict[str, int]) -> list[str]:
    """The first `amount` ids of `ordered`; a word budget: each in order whose words still fit
    (al_core.strategies.select_batch's rule)."""
    if not in_words:
        return list(ordered[:amount])
    chosen, used = [], 0
    for i in ordered:
        if used + n_words[i] <= amount:
            chosen.append(i)
            used += n_words[i]
    return chosen


def draw_seed_set(config: SimulationConfig, data: SimulationData, seed: int, vectors_of=None) -> list[str]:
    """The seed set: a number of tasks, or sentences up to a word budget. With
    acquisition_mode.cold_start_labels > 0 (and an encoder, `order_vectors`) it opens with the
    cold-start order: a count takes its first min(count, cold_start_labels) tasks, a word budget its
    tasks in order while each still fits. The rest is drawn at random (seeded by `seed`);
    `vectors_of`: the run's, else the acquisition model's encoder with a cache of its own."""
    amount = config.seed_set.resolve(len(data.pool), data.pool_words)
    n_words = {e.id: e.n_words for e in data.pool}
    cold = config.acquisition_mode.cold_start_labels
    first: list[str] = []
    if cold > 0:
        vectors_of = vectors_of or order_vectors(config, data, MemoryEmbeddingCache())
        if vectors_of is not None:
            choosable = without_audit(data.pool, seed, config.acquisition_mode.audit_share)
            ordered = cold_start_tasks(choosable, set(), cold, vectors_of, seed)
            first = take_amount(ordered, amount, config.seed_set.in_words, n_words)  # at most `cold` tasks
    taken = set(first)
    rest = [data.pool[i].id for i in np.random.default_rng([seed, 0]).permutation(len(data.pool))]
    rest = [i for i in rest if i not in taken]
    if not config.seed_set.in_words:
        return first + rest[: amount - len(first)]
    chosen, used = list(first), sum(n_words[i] for i in first)
    for i in rest:
        if used >= amount:
            break
        chosen.append(i)
        used += n_words[i]
    return chosen


def overlap_with_previous_ranking(
    previous: dict[str, float], selected: list[str], ks: list[int]
) -> dict | None:
    """The share of this query that the previous ranking's top k% held, for each k (the paper's table)."""
    if not previous or not selected:
        return None
    ranked = sorted(previous, key=lambda i: -previous[i])
    out = {}
    for k in ks:
        top = set(ranked[: math.ceil(len(ranked) * k / 100)])
        out[str(k)] = sum(i in top for i in selected) / len(selected)
    return out


def _iteration_seed(seed: int, iteration: int) -> int:
    return seed * 1000 + iteration


class ResultsStore:
    """results.jsonl plus the per-seed score-cache checkpoints, with the resume logic."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / RESULTS

    def load(self) -> list[dict]:
        """Records written so far; a line cut short by a kill is dropped from the file."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            raw = raw[: raw.rfind(b"\n") + 1]
            self.path.write_bytes(raw)
        return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]

    def append(self, records: list[dict]) -> None:
        """All records of one iteration in one write, flushed to disk."""
        with self.path.open("a", encoding="utf-8") as out:
            out.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            out.flush()
            os.fsync(out.fileno())

    def rewrite(self, records: list[dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
        tmp.replace(self.path)

    def _cache_path(self, seed: int, iteration: int) -> Path:
        return self.folder / STATE_DIR / f"seed-{seed}" / f"cache-it{iteration}.json"

    def save_cache(self, seed: int, iteration: int, cache: InMemoryScoreCache) -> None:
        path = self._cache_path(seed, iteration)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = {i: [c.score, c.model_version, c.iteration] for i, c in cache.all().items()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        tmp.replace(path)
        old = self._cache_path(seed, iteration - 2)  # keep the last two: enough to resume
        old.unlink(missing_ok=True)

    def load_cache(self, seed: int, iteration: int) -> InMemoryScoreCache | None:
        path = self._cache_path(seed, iteration)
        if not path.exists():
            return None
        cache = InMemoryScoreCache()
        rows = json.loads(path.read_text(encoding="utf-8"))
        cache.set_many({i: CachedScore(float(s), str(v), int(t)) for i, (s, v, t) in rows.items()})
        return cache


def _comparable(config: SimulationConfig) -> dict:
    """What must not change between a run and its resumption (seeds and iterations may grow)."""
    return config.model_dump(exclude={"seeds", "iterations", "output_dir", "source"}, mode="json")


def _check_same_config(folder: Path, config: SimulationConfig) -> None:
    saved_path = folder / CONFIG_COPY
    current = config.model_dump(exclude={"source"}, mode="json")
    if saved_path.exists():
        saved = SimulationConfig.model_validate(yaml.safe_load(saved_path.read_text(encoding="utf-8")))
        if _comparable(saved) != _comparable(config):
            raise ConfigError(
                f"{folder} holds results of a different config (see {saved_path}); "
                "set output_dir to another folder or delete that one"
            )
    return current


def _check_models_exist(config: SimulationConfig) -> None:
    """Local model folders and GloVe vectors must exist before anything runs (ids are left to the hub)."""
    specs = [("acquisition", config.acquisition)]
    specs += [(f"successor {s.name}", s) for s in config.successors]
    if config.plasm is not None:
        specs.append(("plasm teacher", config.plasm.teacher))
    for role, spec in specs:
        if spec.kind == "transformer":
            path = expand_path(spec.model)
            if path.startswith(("/", ".", "~")) and not Path(path).exists():
                raise ConfigError(f"{role}: model folder {path} does not exist")
        if spec.kind == "glove_bilstm":
            folder = Path(expand_path(str(spec.params.get("vectors_dir", model_factory.DEFAULT_GLOVE_DIR))))
            if not (folder / "vectors.npy").is_file():
                raise ConfigError(f"{role}: no GloVe vectors.npy in {folder} (set params.vectors_dir)")


class Simulation:
    """One config's run: every seed, every iteration, every successor."""

    def __init__(self, config: SimulationConfig, folder: Path | None = None, progress: bool = True):
        self.config = config
        self.folder = Path(folder) if folder else config.results_dir()
        self.progress = progress
        self.store = ResultsStore(self.folder)
        self.data: SimulationData | None = None
        self._embeddings = MemoryEmbeddingCache()  # frozen-encoder vectors: one pass per task per run
        self._vectors_of: Callable | None = None  # the orders' vectors (order_vectors), once data is read
        # per seed, the last fine-tune that refresh rounds read: (its saved folder, its labeled count)
        self._encoders: dict[int, tuple[str, int]] = {}
        # seed -> the UPS subset the scores cached before the last encoder's fine-tune would have
        # chosen: what the refresh rounds over that encoder score (ups_premise)
        self._ups_subsets: dict[int, set[str]] = {}

    @property
    def strategy(self) -> str:
        """The configured strategy; `auto`: the task kind's, as the backend's AL_STRATEGY=auto."""
        if self.config.strategy != "auto" or self.data is None:
            return self.config.strategy
        return self.data.task_kind.default_strategy

    def settings_in_force(self) -> dict:
        """Every training, scoring and acquisition value the run uses, defaults included."""
        from al_core.ordering import QUERY_WINDOW

        config = self.config
        acquisition = {"model": config.acquisition.name, "mode": dataclasses.asdict(config.acquisition_mode)}
        if config.acquisition.kind == "transformer":
            training = model_factory.training_config(config.acquisition, config.training, seed=0)
            acquisition["training"] = {k: v for k, v in dataclasses.asdict(training).items() if k != "seed"}
        return {
            "acquisition": acquisition,
            "scoring": dataclasses.asdict(self._subsampling()),
            "strategy": self.strategy,
            "orders": {
                "team_size": self._team_size(),
                "cold_start_labels": config.acquisition_mode.cold_start_labels if has_encoder(self.config) else 0,
                "query_window": QUERY_WINDOW,
            },
            "training_overrides": config.training,
        }

    # -- the orders (al_core.ordering) ---------------------------------------------------
    def _team_size(self) -> int:
        return self.config.acquisition_mode.team_size if has_encoder(self.config) else 1

    def _order_vectors(self) -> Callable | None:
        if self._vectors_of is None:
            self._vectors_of = order_vectors(self.config, self.data, self._embeddings)
        return self._vectors_of

    # -- names and amounts ---------------------------------------------------------------
    def successor_names(self) -> list[str]:
        names = [s.name for s in self.config.successors]
        if self.config.plasm is not None:
            names += [f"{s.name}+plasm" for s in self.config.successors if s.kind != "acquisition"]
        return names

    def _subsampling(self) -> SubsamplingConfig:
        return self.config.scoring  # the engine's own config: every field, min_premise included

    def _check_fits_the_data(self) -> None:
        from al_core.strategies import available_strategies

        kind = self.data.kind
        if self.strategy not in available_strategies(kind):
            raise ConfigError(
                f"strategy {self.strategy!r} does not apply to {kind}; "
                f"choose one of {', '.join(available_strategies(kind))}"
            )
        specs = [self.config.acquisition, *self.config.successors]
        if self.config.plasm is not None:
            specs.append(self.config.plasm.teacher)
        for spec in specs:
            if spec.kind in model_factory.CLASSICAL and model_factory.CLASSICAL[spec.kind][1] != kind:
                raise ConfigError(
                    f"{spec.name}: {spec.kind} is a {model_factory.CLASSICAL[spec.kind][1]} model, "
                    f"but the dataset is {kind}"
                )
        if (
            self.config.plasm
            and self.config.plasm.filter == "tracin"
            and self.config.plasm.teacher.kind != "transformer"
        ):
            raise ConfigError("plasm.filter tracin needs a transformer teacher")

    # -- resume --------------------------------------------------------------------------
    def _finished(self, records: list[dict]) -> dict[int, dict[int, list[dict]]]:
        """seed -> iteration -> records, complete iterations only (all successors present)."""
        with_plasm = set(self.successor_names())
        without_plasm = {n for n in with_plasm if not n.endswith("+plasm")}
        grouped: dict[int, dict[int, list[dict]]] = {}
        for r in records:
            grouped.setdefault(r["seed"], {}).setdefault(r["iteration"], []).append(r)

        def done(t: int, rs: list[dict]) -> bool:
            expected = with_plasm if self.config.plasm and self._plasm_at(t) else without_plasm
            if not {r["successor"] for r in rs} >= expected:
                return False
            # the last iteration of a shorter run queried nothing: with more iterations it runs again
            return t >= self.config.iterations or bool(rs[0]["query_ids"]) or rs[0]["pool_size"] == 0

        return {seed: {t: rs for t, rs in its.items() if done(t, rs)} for seed, its in grouped.items()}

    def run(self, stop_after: int | None = None) -> Path:
        """Runs what is missing; returns the results folder. `stop_after` iterations (tests: a kill)."""
        resolved = _check_same_config(self.folder, self.config)
        _check_models_exist(self.config)
        self.data = load_data(self.config)
        self._check_fits_the_data()
        self.folder.mkdir(parents=True, exist_ok=True)  # only once the config, models and data are good
        (self.folder / CONFIG_COPY).write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        (self.folder / SETTINGS_FILE).write_text(json.dumps(self.settings_in_force(), indent=2), encoding="utf-8")
        records = self.store.load()
        finished = self._finished(records)
        complete = [r for r in records if r["iteration"] in finished.get(r["seed"], {})]
        if len(complete) != len(records):  # a half-written iteration: drop it, it runs again
            self.store.rewrite(complete)
        from tqdm.auto import tqdm

        total = len(self.config.seeds) * (self.config.iterations + 1)
        done = sum(
            1 for seed in self.config.seeds for t in finished.get(seed, {}) if t <= self.config.iterations
        )
        bar = tqdm(total=total, initial=done, desc=self.config.name, unit="iter", disable=not self.progress)
        ran = 0
        try:
            for seed in self.config.seeds:
                for record_group in self._run_seed(seed, finished.get(seed, {})):
                    self.store.append(record_group)
                    bar.update(1)
                    first = record_group[0]
                    bar.set_postfix(
                        seed=seed,
                        it=first["iteration"],
                        n=first["labeled_size"],
                        score=f"{first['successor_score']:.3f}",
                    )
                    ran += 1
                    if stop_after is not None and ran >= stop_after:
                        return self.folder
        finally:
            bar.close()
        write_csv(self.store.load(), self.folder / "results.csv")
        return self.folder

    # -- one seed ------------------------------------------------------------------------
    def _run_seed(self, seed: int, finished: dict[int, list[dict]]):
        config, data = self.config, self.data
        cache = InMemoryScoreCache()
        start = 0
        for t in sorted(finished):  # rebuild the state after the last finished iteration
            if t != start:
                break
            labeled_ids = finished[t][0]["labeled_ids_before"] + finished[t][0]["query_ids"]
            start = t + 1
        if not start:
            labeled_ids = draw_seed_set(config, data, seed, self._order_vectors())
        else:
            restored = self.store.load_cache(seed, start - 1)
            cache = restored if restored is not None else InMemoryScoreCache()
        for t in range(start, config.iterations + 1):
            records = self._iteration(seed, t, labeled_ids, cache)
            # the cache first: if a kill lands before the records, iteration t runs again from cache t-1
            self.store.save_cache(seed, t, cache)
            yield records
            labeled_ids = labeled_ids + records[0]["query_ids"]

    def _iteration(self, seed: int, t: int, labeled_ids: list[str], cache: InMemoryScoreCache) -> list[dict]:
        """Iteration t of a seed: the acquisition round (a query, except at the last iteration),
        then every successor, with and without PLASM. Each record holds the query (query_ids)."""
        config, data = self.config, self.data
        labeled_set = set(labeled_ids)
        labeled = [data.gold[i] for i in labeled_ids]
        pool = [e for e in data.pool if e.id not in labeled_set]
        iteration_seed = _iteration_seed(seed, t)
        chosen = self._acquisition_model(seed, t, len(labeled), iteration_seed)
        acquisition, mode = chosen.model, chosen.mode
        base = {
            "config": config.name,
            "seed": seed,
            "iteration": t,
            "labeled_size": len(labeled),
            "labeled_words": sum(e.n_words for e in labeled),
            "pool_size": len(pool),
            "acquisition": config.acquisition.name,
            "strategy": self.strategy,
            "scoring": config.scoring.mode,
            "acquisition_mode": mode,
            "metric": data.task_kind.metric,
            "labeled_ids_before": list(labeled_ids),
        }
        base["finetune_accepted"] = base["finetune_timings"] = base["finetune_premise"] = None
        base["finetune_verdict"] = None
        if t < config.iterations and pool:
            base.update(self._query_round(acquisition, labeled, pool, cache, seed, t, chosen.hand_over))
            if chosen.hand_over is not None:  # a run resumed after a kill fine-tunes again first
                self._encoders[seed] = keep_encoder(chosen, acquisition, self._encoders.get(seed))
            if chosen.finetune_due:  # the backend's background lane: the next round reads what it adopts
                verdict = self._background_finetune(seed, t, labeled, pool, cache, iteration_seed)
                base["finetune_accepted"] = verdict.accepted
                base["finetune_timings"] = verdict.timings
                base["finetune_premise"] = verdict.premise  # measured by a whole-pool pass
                base["finetune_verdict"] = self._verdict_against_truth(verdict, labeled, iteration_seed)
        else:
            base.update(self._last_round(acquisition, labeled, seed))
        # a fine-tuned version's quality estimate holds some labels out of its training
        quality_n = base.pop("quality_n")
        base["acq_n_train"] = len(labeled) - (quality_n if getattr(acquisition, "mode", "finetune") != "frozen" else 0)
        start = time.perf_counter()
        base.update(_scored("acquisition", evaluate(acquisition, data.test)))
        base["acq_eval_s"] = time.perf_counter() - start
        del acquisition
        return self._successor_records(base, labeled, pool, seed, t)

    def _acquisition_model(self, seed: int, t: int, n_labeled: int, iteration_seed: int):
        """The round's model as the backend's retrain picks it (al_core.loop.round_model): a refresh
        round reads the seed's last fine-tuned encoder; a fine-tune that refresh rounds will follow
        is saved under encoders/ after its round (al_core.loop.keep_encoder)."""
        from al_core.loop import RoundModel, round_model

        config, data = self.config, self.data
        if config.acquisition.kind != "transformer":
            return RoundModel(
                model_factory.build(config.acquisition, data.kind, data.labels, config.training, iteration_seed),
                "finetune",
            )
        return round_model(
            config.acquisition_mode, data.kind, data.labels, n_labeled,
            lambda mode: model_factory.build(
                config.acquisition, data.kind, data.labels, config.training, iteration_seed, mode, self._embeddings
            ),
            self._encoders.get(seed),
            lambda: str((self.folder / "encoders" / f"seed{seed}-it{t}").resolve()),
            model_factory.training_config(config.acquisition, config.training, iteration_seed),
            self._embeddings,
        )

    def _background_finetune(self, seed: int, t: int, labeled, pool, cache, iteration_seed: int):
        """The fine-tune the round found due, as the backend's background lane runs it after the retrain
        (al_core.loop.finetune_encoder over the round's score cache, UPS at the next iteration); the
        next round reads its encoder if the verdict takes it up. Returns the verdict (FinetuneVerdict)."""
        from al_core.loop import adopt_encoder, finetune_encoder
        from al_core.strategies import get_strategy

        config, data = self.config, self.data
        would_be = self._ups_subset([e.id for e in pool], cache, seed, t + 1)
        verdict = finetune_encoder(
            lambda mode: model_factory.build(
                config.acquisition, data.kind, data.labels, config.training, iteration_seed, mode, self._embeddings
            ),
            data.kind, data.labels, labeled, pool, cache, PoolSubsampler(self._subsampling(), seed=seed), t + 1,
            config.acquisition_mode, str((self.folder / "encoders" / f"seed{seed}-it{t}").resolve()),
            self._encoders.get(seed),
            model_factory.training_config(config.acquisition, config.training, iteration_seed), self._embeddings,
            seed=seed, strategy=get_strategy(self.strategy, seed=iteration_seed),
        )
        self._encoders[seed] = adopt_encoder(verdict, self._encoders.get(seed))
        if verdict.accepted:
            self._ups_subsets[seed] = would_be
        return verdict

    def _verdict_against_truth(self, verdict, labeled: list[Example], iteration_seed: int) -> dict:
        """What the verdict read (both heads' held-out figures, on how many tasks) beside what it
        guessed at: the test-set headline of the head the fine-tune would serve (over its encoder, fit
        on every label), to set against the record's acquisition_score (the head served meanwhile, fit
        on the same labels). Runs after adopt_encoder, which saved a taken-up encoder; one not taken up
        is saved here for the measure, then deleted with its vectors."""
        from al_core.models import refresh_model

        config, data, folder = self.config, self.data, verdict.folder
        training = model_factory.training_config(config.acquisition, config.training, iteration_seed)
        if not verdict.accepted:
            verdict.save(folder)
        head = refresh_model(data.kind, folder, data.labels, training, self._embeddings)
        head.fit(labeled)
        candidate = evaluate(head, data.test)["value"]
        if not verdict.accepted:
            head.forget(labeled + data.test)
            shutil.rmtree(folder, ignore_errors=True)
        read = verdict.as_dict()
        return {
            **{key: read[key] for key in ("value", "incumbent_value", "margin", "n_held_out", "min_held_out")},
            "candidate_score": candidate,
        }

    def _ups_subset(self, pool_ids: list[str], cache, seed: int, iteration: int) -> set[str]:
        """The tasks UPS would score at `iteration` from the scores cached now, whatever the schedule
        says (no full pass): the subset whose premise `ups_premise` measures."""
        ups = dataclasses.replace(self._subsampling(), mode="ups")
        return set(PoolSubsampler(ups, seed=seed).subset(pool_ids, cache.get_many(pool_ids), iteration))

    def _query_round(self, acquisition, labeled, pool, cache, seed: int, t: int, hand_over=None) -> dict:
        """The backend's round (al_core.loop.run_round: fit, subsample, score, rank), then the
        query as the backend serves it (`_served_batch`) with the audit tasks in their places."""
        from al_core.loop import run_round
        from al_core.strategies import get_strategy

        config = self.config
        previous = {i: c.score for i, c in cache.get_many([e.id for e in pool]).items()}
        subsampling = self._subsampling()
        if getattr(acquisition, "encoder_saw_labels", False):  # a refresh round scores its fine-tune's subset
            would_be = self._ups_subsets.get(seed)
        elif getattr(acquisition, "scores_whole_pool", False):  # a frozen head subsamples nothing
            would_be = None
        else:
            would_be = self._ups_subset([e.id for e in pool], cache, seed, t)
            if hand_over is not None:
                self._ups_subsets[seed] = would_be
        result = run_round(
            acquisition,
            labeled,
            pool,
            get_strategy(self.strategy, seed=_iteration_seed(seed, t)),
            PoolSubsampler(subsampling, seed=seed),
            cache,
            iteration=t,
            model_version=f"seed{seed}-it{t}",
            acquisition=config.acquisition_mode,
            seed=seed,
            count=len(pool),  # every freshly scored task, best first: the ranking
            hand_over=hand_over,
            top_up=self._query_size(),  # a refresh round's fresh tasks: at least a query's worth
        )
        start = time.perf_counter()
        share = config.acquisition_mode.audit_share
        batch, order = self._served_batch(without_audit(result.selected_ids, seed, share), labeled, pool, seed)
        order_s = time.perf_counter() - start
        labeled_audit = sum(is_audit_task(e.id, seed, share) for e in labeled)
        query = audited_query(batch, [e.id for e in pool], len(labeled), labeled_audit, seed, share)
        return {
            "acq_fit_s": result.timings.get("fit_s", 0.0),
            "inference_s": result.timings.get("inference_s", 0.0),
            "select_s": result.timings.get("select_s", 0.0) + order_s,  # the served order's time too
            "n_scored": result.n_scored,
            "full_scoring": subsampling.is_full_iteration(t),
            "overlap": overlap_with_previous_ranking(
                previous if len(previous) == len(pool) else {}, batch, config.overlap_k
            ),
            # measured where the round scored the whole pool: its ranking is then a full pass's
            "ups_premise": ups_premise(list(result.selected_ids), would_be or set())
            if len(result.fresh_ids) == len(pool) and len(previous) == len(pool) else None,
            "ups_subset_share": len(would_be & {e.id for e in pool}) / len(pool) if would_be else None,
            "query_ids": query,
            "query_order": order,
            "team_size": self._team_size(),
            "audit_queried": sum(is_audit_task(i, seed, share) for i in query),
            # what the audit sample (a uniform share of the pool) estimates: the version on the rest
            # of the pool, where the round scored all of it; the test split may mix classes otherwise
            "pool_score": self._pool_score(acquisition, result.probs, pool)
            if len(result.probs) == len(pool) else None,
            **_estimates(result.quality),
        }

    def _pool_score(self, model, probs: dict, pool) -> float:
        """The headline of the version's predictions (decoded from the round's probabilities) over
        the unlabeled pool, against the pool's gold labels."""
        kind, labels = model.task_kind, list(model.labels)
        gold = [kind.gold(self.data.gold[e.id]) for e in pool]
        predicted = [kind.decode(probs[e.id], labels) for e in pool]
        return kind.report(gold, predicted, kind.config_labels(labels))["value"]

    def _query_size(self) -> int:
        """The tasks a query serves from the ranking: its batch, or the window of a word budget."""
        from al_core.ordering import QUERY_WINDOW

        amount = self.config.batch.resolve(len(self.data.pool), self.data.pool_words)
        return QUERY_WINDOW if self.config.batch.in_words else max(amount, QUERY_WINDOW)

    def _served_batch(self, ranking: list[str], labeled, pool, seed: int) -> tuple[list[str], str]:
        """The batch (a count, or sentences within a word budget) as the backend serves it, and the
        order it came from. `ranking`: the fresh tasks, best first. "ranking": the first
        max(batch, QUERY_WINDOW) of them (a word budget: QUERY_WINDOW) in the team's serving order
        (al_core.ordering.serving_order, team_size), the rest of the ranking after them.
        "cold_start": while fewer than cold_start_labels tasks are labeled, the cold-start order of
        the unlabeled tasks comes first (the served ranking fills what it leaves)."""
        from al_core.ordering import QUERY_WINDOW, serving_order

        config, modes = self.config, self.config.acquisition_mode
        amount = config.batch.resolve(len(self.data.pool), self.data.pool_words)
        in_words = config.batch.in_words
        vectors_of = self._order_vectors()
        by_id = {e.id: e for e in pool}
        window = QUERY_WINDOW if in_words else max(amount, QUERY_WINDOW)
        served = serving_order([by_id[i] for i in ranking[:window]], vectors_of, self._team_size(), seed)
        ordered = [e.id for e in served] + ranking[window:]
        order = "ranking"
        if vectors_of is not None and len(labeled) < modes.cold_start_labels:
            done = {e.id for e in labeled}
            choosable = without_audit(self.data.pool, seed, modes.audit_share, keep=done)
            cold = cold_start_tasks(choosable, done, modes.cold_start_labels, vectors_of, seed)
            if cold:
                first = set(cold)
                ordered = cold + [i for i in ordered if i not in first]
                order = "cold_start"
        return take_amount(ordered, amount, in_words, {e.id: e.n_words for e in pool}), order

    def _last_round(self, acquisition, labeled, seed: int) -> dict:
        """The last iteration: the acquisition model is trained and evaluated, nothing is queried."""
        start = time.perf_counter()
        quality = fit_with_estimate(acquisition, labeled, self.config.acquisition_mode, seed)
        return {
            "acq_fit_s": time.perf_counter() - start,
            "inference_s": 0.0,
            "select_s": 0.0,
            "n_scored": 0,
            "full_scoring": False,
            "overlap": None,
            "ups_premise": None,
            "ups_subset_share": None,
            "query_ids": [],
            "query_order": None,
            "team_size": self._team_size(),
            "audit_queried": 0,
            "pool_score": None,
            **_estimates(quality),
        }

    def _successor_records(self, base: dict, labeled, pool, seed: int, t: int) -> list[dict]:
        """One record per successor trained on the labeled set, and per successor + PLASM."""
        config, iteration_seed = self.config, _iteration_seed(seed, t)
        records = [
            {**base, **self._train_successor(spec, labeled, iteration_seed, base), "pseudo_labels": False}
            for spec in config.successors
        ]
        if config.plasm is not None and self._plasm_at(t):
            pseudo = self._plasm_pseudo_labels(labeled, pool, seed, t)
            for spec in config.successors:
                if spec.kind == "acquisition":
                    continue
                used, check_info = self._plasm_check(spec, pseudo, iteration_seed)
                row = self._train_successor(spec, labeled + used, iteration_seed, base)
                row["successor"] = f"{spec.name}+plasm"
                records.append({**base, **row, **pseudo.info, **check_info, "pseudo_labels": True})
        return records

    def _plasm_at(self, t: int) -> bool:
        every = self.config.plasm.every
        return t == self.config.iterations or (every > 0 and t % every == 0)

    def _train_successor(self, spec, train: list[Example], iteration_seed: int, base: dict) -> dict:
        data = self.data
        if spec.kind == "acquisition":
            # the matched pair: the acquisition model is its own successor, trained on every label
            # like the others; the round's model is reused only when it was (no label held out)
            if base["acq_n_train"] == len(train):
                return {
                    "successor": spec.name,
                    "successor_kind": spec.kind,
                    "successor_n_train": len(train),
                    "successor_score": base["acquisition_score"],
                    **{f"successor_{name}": base[f"acquisition_{name}"] for name in data.task_kind.metrics[1:]},
                    "successor_recall": base["acquisition_recall"],
                    "successor_fit_s": base["acq_fit_s"],
                    "successor_eval_s": base["acq_eval_s"],
                }
            model = model_factory.build(
                self.config.acquisition, data.kind, data.labels, self.config.training, iteration_seed,
                base["acquisition_mode"], self._embeddings,
            )
        else:
            model = model_factory.build(spec, data.kind, data.labels, self.config.training, iteration_seed)
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        scores = evaluate(model, data.test)
        return {
            "successor": spec.name,
            "successor_kind": spec.kind,
            "successor_n_train": len(train),
            **_scored("successor", scores),
            "successor_fit_s": fit_s,
            "successor_eval_s": time.perf_counter() - start,
        }

    def _plasm_pseudo_labels(self, labeled: list[Example], pool: list[Example], seed: int, t: int) -> PlasmPseudo:
        """The teacher's filtered pseudo-labels for the rest of the pool, as plasm-export makes them:
        the teacher is scored on a held-out part of the gold (its score sets how many pseudo-labels
        to drop, 1 - score, unless plasm.drop_fraction is given), then refit on all the gold to label
        and filter the pool. Each successor's check (`_plasm_check`) decides whether they go in."""
        from al_core import plasm

        pcfg, data, iteration_seed = self.config.plasm, self.data, _iteration_seed(seed, t)
        kind = data.task_kind
        timings = {}
        # the same hold-out split as plasm-export's (stratified by class where the classes allow it)
        train, held_out = plasm.split_gold(labeled, data.kind, pcfg.holdout_fraction, iteration_seed)
        scored = model_factory.build(pcfg.teacher, data.kind, data.labels, self.config.training, iteration_seed)
        start = time.perf_counter()
        scored.fit(train)
        timings["teacher_fit_s"] = time.perf_counter() - start
        teacher_score = plasm.score_teacher(scored, held_out)
        teacher = model_factory.build(pcfg.teacher, data.kind, data.labels, self.config.training, iteration_seed)
        with tempfile.TemporaryDirectory(prefix="plasm-ckpt-") as folder:
            recorder = plasm.CheckpointRecorder(folder) if pcfg.filter == "tracin" else None
            start = time.perf_counter()
            teacher.fit(labeled, on_checkpoint=recorder)
            timings["teacher_refit_s"] = time.perf_counter() - start
            options = {"checkpoints": recorder.checkpoints} if recorder is not None else {}
            label_filter = plasm.get_filter(pcfg.filter, **options)
            filtered, steps = plasm.label_pool(teacher, pool, label_filter, teacher_score, pcfg.drop_fraction)
            timings.update(steps)
        del teacher
        kept = filtered.kept_examples
        # the checks' pseudo-labels are the scored teacher's, which never saw the held-out gold
        unseen = plasm.with_labels(kept, plasm.pseudo_label(scored, kept).labels, kind) if pcfg.check and kept else []
        del scored
        correct = [kind.agrees(kind.gold(e), kind.gold(data.gold[e.id])) for e in kept]
        info = {
            "teacher": pcfg.teacher.name,
            "teacher_holdout_score": teacher_score,
            "drop_fraction": filtered.drop_fraction,
            "n_pseudo": len(pool),
            "n_pseudo_kept": len(kept),
            "pseudo_accuracy_kept": (sum(correct) / len(correct)) if correct else None,
            **timings,
        }
        return PlasmPseudo(kept, unseen, train, held_out, info)

    def _plasm_check(self, spec, pseudo: PlasmPseudo, iteration_seed: int) -> tuple[list[Example], dict]:
        """The kept pseudo-labels this successor trains on, and its check's columns: with plasm.check,
        the successor itself (as plasm-export checks a successor it is given) trained on the held-out
        split's rest of the gold, alone and with the scored teacher's pseudo-labels, and scored on the
        held-out gold; the pseudo-labels go in only when they win by more than plasm.check_margin."""
        from al_core import plasm

        pcfg, data = self.config.plasm, self.data
        if not (pcfg.check and pseudo.kept):
            return pseudo.kept, {"n_pseudo_used": len(pseudo.kept), "check_gold_only": None,
                                 "check_with_pseudo": None, "check_better": None}
        start = time.perf_counter()
        check = plasm.check_successor(
            spec.name, data.kind, data.labels, pseudo.train, pseudo.held_out, pseudo.unseen,
            model_factory.training_config(spec, self.config.training, iteration_seed), margin=pcfg.check_margin,
            build=lambda: model_factory.build(spec, data.kind, data.labels, self.config.training, iteration_seed),
        )
        used = pseudo.kept if check["better"] == "with_pseudo" else []
        return used, {
            "n_pseudo_used": len(used),
            "check_gold_only": check["gold_only"]["score"],
            "check_with_pseudo": check["with_pseudo"]["score"],
            "check_better": check["better"],
            "successor_check_s": time.perf_counter() - start,
        }


@dataclass
class PlasmPseudo:
    """The teacher's kept pseudo-labels (`kept`; `unseen`: the same tasks labeled by the teacher fit
    on `train` only, for the successors' checks), the gold's split and the records' PLASM columns."""

    kept: list[Example]
    unseen: list[Example]
    train: list[Example]
    held_out: list[Example]
    info: dict


CSV_SKIP = {
    "labeled_ids_before", "query_ids", "overlap", "ups_premise", "finetune_timings", "finetune_premise",
    "acquisition_recall", "successor_recall",
}


def write_csv(records: list[dict], path: Path) -> None:
    """The records as a flat CSV (ids left out, the overlap table spread over columns)."""
    import csv

    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in CSV_SKIP}
        for k, v in (r.get("overlap") or {}).items():
            row[f"overlap_top{k}"] = v
        for k, v in (r.get("ups_premise") or {}).items():
            row[f"ups_premise_top{k}"] = v
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def run_config(config: SimulationConfig, folder: Path | None = None, progress: bool = True) -> Path:
    return Simulation(config, folder, progress).run()

"""The ``hydrarec`` command line. Each subcommand calls one library function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hydrarec import __version__
from hydrarec.errors import ArgumentError, ConfigError, DataError, HydrarecError

app = typer.Typer(
    help="hydrarec: multi-task representation learning for recommender systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
datasets_app = typer.Typer(help="List, describe and download datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
events_app = typer.Typer(help="The event log of hydrarec serve --events.", no_args_is_help=True)
app.add_typer(events_app, name="events")
console = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"hydrarec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """hydrarec: multi-task representation learning for recommender systems."""


# -- datasets ---------------------------------------------------------------------------------
@datasets_app.command("list")
def datasets_list() -> None:
    """The datasets hydrarec knows, and where each was found."""
    from hydrarec.data.registry import DATASETS, locate

    table = Table("name", "description", "location")
    for name, info in DATASETS.items():
        try:
            where = str(locate(name)) if info.folder else "generated"
        except DataError:
            where = f"not found (hydrarec datasets fetch {name})"
        table.add_row(name, info.description, where)
    console.print(table)


@datasets_app.command("info")
def datasets_info(
    name: str,
    path: Annotated[Path | None, typer.Option(help="Folder of the files.")] = None,
    file: Annotated[
        str | None, typer.Option(help="sequences: the file, one user a line (user item item ...).")
    ] = None,
    item_attributes: Annotated[
        str | None, typer.Option(help="sequences: JSON of item -> attribute ids.")
    ] = None,
) -> None:
    """Counts of users, items, interactions, feedback columns and time span.

    ``hydrarec datasets info sequences --file amazon-beauty/Beauty.txt`` describes a sequence file
    (a relative path is looked for in --path, $HYDRAREC_DATA_DIR and the cache).
    """
    from hydrarec.config import DataConfig, SequencesConfig
    from hydrarec.data.registry import dataset_names, load_dataset

    if name not in (*dataset_names(), "sequences"):
        known = ", ".join([*dataset_names(), "sequences"])
        raise ConfigError(f"unknown dataset {name!r} (known: {known})")
    if name == "sequences":
        if file is None:
            raise ConfigError("datasets info sequences: give the file with --file PATH")
        seq = SequencesConfig(file=file, item_attributes=item_attributes)
        data = DataConfig(dataset="sequences", sequences=seq, path=path and str(path))
    else:
        data = DataConfig(dataset=name, path=path and str(path))  # type: ignore[arg-type]
    s = load_dataset(data).summary()
    table = Table("", name, show_header=False)
    for key in ("users", "items", "interactions"):
        table.add_row(key, f"{s[key]:,}")
    table.add_row("feedback", ", ".join(f"{k} ({v})" for k, v in s["feedback"].items()) or "-")
    table.add_row("user features", ", ".join(s["user_features"]) or "-")
    table.add_row("item features", ", ".join(s["item_features"]) or "-")
    if "time_span" in s:
        table.add_row("time span", " .. ".join(s["time_span"]))
    table.add_row("given splits", ", ".join(s["given_splits"]) or "-")
    console.print(table)


@datasets_app.command("fetch")
def datasets_fetch(
    name: str,
    dest: Annotated[Path | None, typer.Option(help="Root folder (default: the cache).")] = None,
) -> None:
    """Download a dataset from its publisher and verify its checksum."""
    from hydrarec.data.fetch import fetch

    console.print(f"fetched {name} into {fetch(name, dest)}")


# -- init -------------------------------------------------------------------------------------
@app.command()
def init(
    data: Annotated[
        Path,
        typer.Argument(
            help="Interactions (CSV / TSV / Parquet), a folder of train / valid / test files, or "
            "a sequence file (one user a line)."
        ),
    ],
    items: Annotated[
        Path | None,
        typer.Option(help="Items table (item id + features, text); sequences: attributes JSON."),
    ] = None,
    users: Annotated[Path | None, typer.Option(help="Users table (user id + features).")] = None,
    task: Annotated[str, typer.Option(help="Emphasis: next-item, rating or ctr.")] = "next-item",
    user_id: Annotated[str | None, typer.Option(help="User id column (default: by name).")] = None,
    item_id: Annotated[str | None, typer.Option(help="Item id column (default: by name).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Config file to write.")] = Path(
        "config.toml"
    ),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
) -> None:
    """Write a commented config for your own data that trains as it stands.

    Reads the files' headers and a sample, shows what each column was taken for and why, and
    chooses the tasks (retrieval always; rating / binary from labels; reconstruction from item
    features; item text), the split and the model. Then: hydrarec train -c OUT --out RUN.
    """
    from hydrarec.scaffold import scaffold, write_scaffold

    result = scaffold(data, items=items, users=users, emphasis=task, user_id=user_id,
                      item_id=item_id, config_name=out.name)  # fmt: skip
    table = Table("file", "column", "taken as", "why", title="what hydrarec init inferred")
    for file, guesses in result.facts.guesses.items():
        for g in guesses:
            taken = g.role if g.kind is None else f"{g.role} ({g.kind})"
            table.add_row(escape(file), escape(g.column), taken, escape(g.why))
    console.print(table)
    f = result.facts
    console.print(f"{f.n_users:,} users, {f.n_items:,} items, {f.n_rows:,} interactions")
    for line in result.choices:
        console.print(f"- {escape(line)}")
    write_scaffold(result, out, overwrite=overwrite)
    console.print(f"config written to {out}; train it: hydrarec train -c {out} --out runs/mine")


# -- train / evaluate -------------------------------------------------------------------------
@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run's last checkpoint.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a complete run at --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    test: Annotated[
        bool,
        typer.Option(
            help="Score test at the end; --no-test leaves it unread (when comparing settings, "
            "which must be chosen on valid alone)."
        ),
    ] = True,
) -> None:
    """Train a model; writes the run directory and prints validation and test metrics.

    The run is built in OUT.partial and moved to OUT when complete: a kill leaves the previous
    run or none. A complete run at OUT is replaced only with --overwrite; --resume continues a
    killed training (or a complete run's) from its last checkpoint.

    Data-parallel: ``torchrun --nproc-per-node N -m hydrarec train ...`` (docs/distributed.md).
    """
    from contextlib import nullcontext

    from hydrarec.config import load_config
    from hydrarec.io.log import log_to
    from hydrarec.io.progress import Progress
    from hydrarec.run.evaluate import SELECTION
    from hydrarec.run.train import train as run_train
    from hydrarec.training.distributed import is_main_process

    cfg = load_config(config, set_ or [])
    main = is_main_process()  # a torchrun worker other than rank 0 trains and prints nothing
    with log_to(out / "log.txt") if main else nullcontext():  # all printed also in RUN/log.txt
        progress = Progress(enabled=False if quiet or not main else None)
        run = run_train(cfg, out, resume=resume, overwrite=overwrite, progress=progress, test=test)
        if not main:
            return
        print_metrics({k: v for k, v in run.metrics.items() if k in ("valid", "test")})
        if run.metrics.get("train", {}).get("refit"):
            epochs = run.metrics["train"]["best_epoch"]
            console.print(
                f"valid: the model selected at epoch {epochs} ({run.path / SELECTION}); "
                f"test: that many epochs refit on train + valid"
            )
        console.print(f"run written to {run.path}")


@app.command()
def update(
    run: Annotated[Path, typer.Argument(help="The trained run to start from (only read).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new run directory to write.")],
    interactions: Annotated[
        Path | None,
        typer.Option(help="CSV / Parquet: user_id, item_id[, timestamp, feedback columns]."),
    ] = None,
    events: Annotated[
        str | None, typer.Option(help="An event log: SQLite path or postgresql:// URL.")
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option(help="CSV / Parquet of new items: item_id, features, text (as add-items)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="At most this many epochs (default 5).", min=1)
    ] = None,
    replay: Annotated[
        float | None,
        typer.Option(help="Old interactions replayed per new one, each epoch (default 1).", min=0),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the run's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Warm-start RUN on new interactions and write the result as the new run OUT.

    New users and items get their own embedding rows (new items' features and text from
    --items); a few epochs train on the new interactions and a replay sample of the old ones,
    validated on the newest new interactions.
    OUT is a complete run (serve it, or swap it into a service with POST /admin/reload); RUN is
    never modified (docs/online.md).
    """
    from hydrarec.io.atomic import read_json
    from hydrarec.io.progress import Progress
    from hydrarec.online.update import update as run_update
    from hydrarec.run.rundir import RunDir

    if (interactions is None) == (events is None):
        raise ArgumentError(
            "give the new interactions with --interactions FILE or --events LOG (exactly one)"
        )
    progress = Progress(enabled=False if quiet else None)
    path = run_update(
        run,
        out,
        interactions=interactions,
        events=events,
        items=items,
        epochs=epochs,
        replay=replay,
        seed=seed,
        progress=progress,
    )
    facts = read_json(RunDir(path).update)
    console.print(
        f"{facts['new_interactions']:,} new interactions ({facts['valid_interactions']:,} newest "
        f"for validation), {facts['new_users']:,} new users, {facts['new_items']:,} new items; "
        f"best epoch {facts['best_epoch']} of {facts['epochs']}"
    )
    print_metrics({"valid": read_json(path / "metrics.json")["valid"]})
    console.print(f"run written to {path}")


@app.command()
def evaluate(
    run: Path,
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    known: Annotated[
        bool,
        typer.Option(
            "--with-known",
            help="Rank the items the user had before the split too (stored as SPLIT_with_known).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Per-task metrics of a trained run on a split; updates RUN/metrics.json.

    By default a user's earlier items are left out of the ranking (as ``recommend`` leaves out
    seen items); ``--with-known`` keeps them in, the protocol of papers that do not exclude them.
    """
    from hydrarec.io.atomic import read_json, write_json
    from hydrarec.io.log import log_to
    from hydrarec.io.progress import Progress
    from hydrarec.run.evaluate import evaluate as run_evaluate
    from hydrarec.run.rundir import RunDir

    rd = RunDir(run).require()
    with log_to(rd.log):
        with Progress(enabled=False if quiet else None).task(f"evaluating {split}", 1) as bar:
            metrics = run_evaluate(run, split, exclude_known=not known)
            bar.advance()
        key = f"{split}_with_known" if known else split
        stored = read_json(rd.metrics) if rd.metrics.exists() else {}
        write_json(rd.metrics, stored | {key: metrics})
        print_metrics({key: metrics})


@app.command()
def report(
    run: Path,
    format_: Annotated[str, typer.Option("--format", "-f", help="html or md.")] = "html",
) -> None:
    """Write RUN/report.html (or RUN/report.md) with the plots in RUN/plots/."""
    from hydrarec.io.log import log_to
    from hydrarec.report import write_report
    from hydrarec.run.rundir import RunDir

    rd = RunDir(run).require()
    with log_to(rd.log):
        console.print(f"report written to {write_report(run, format_)}")


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    splits = list(metrics)
    keys = sorted({k for m in metrics.values() for k in m})
    table = Table("metric", *splits, title="metrics")
    for k in keys:
        table.add_row(k, *(f"{metrics[s][k]:.4f}" if k in metrics[s] else "-" for s in splits))
    console.print(table)


# -- predict / recommend ----------------------------------------------------------------------
def _read_ids(path: Path, column: str) -> pd.Series:
    """The ``column`` of a CSV as written (text: "042" stays "042", not the number 42)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if column not in df.columns:
        raise DataError(
            f"missing column {column!r} (columns: {list(df.columns)})",
            file=path,
            line=1,
            field=column,
            expected=f"a header with {column!r}",
        )
    return df[column]


def _match_ids(values: pd.Series, known: np.ndarray) -> list[object]:
    """Ids read as text (a CSV, ``--user``) as the run's id type (``match_id_type``'s rule)."""
    from hydrarec.recommend.queries import match_id_type

    return [match_id_type(v, known) for v in values]


@app.command()
def predict(
    run: Path,
    pairs: Annotated[Path, typer.Option(help="CSV with columns user_id,item_id (raw ids).")],
    out: Annotated[Path, typer.Option(help="CSV to write: user_id,item_id + one column a task.")],
) -> None:
    """Every task's prediction for each (user, item) pair."""
    from hydrarec.io.atomic import write_with
    from hydrarec.recommend.recommender import Recommender

    rec = Recommender.load(run)
    users = _match_ids(_read_ids(pairs, "user_id"), rec.run.user_ids.raw_ids)
    items = _match_ids(_read_ids(pairs, "item_id"), rec.run.item_ids.raw_ids)
    preds = rec.predict(users, items)
    df = pd.DataFrame({"user_id": users, "item_id": items, **preds})
    write_with(out, lambda p: df.to_csv(p, index=False))
    console.print(f"{len(df):,} predictions written to {out}")


@app.command()
def recommend(
    run: Path,
    user: Annotated[str | None, typer.Option(help="One raw user id.")] = None,
    users: Annotated[Path | None, typer.Option(help="CSV with a user_id column.")] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Every known user.")] = False,
    k: Annotated[int, typer.Option("-k", help="Items per user.")] = 10,
    exclude_seen: Annotated[bool, typer.Option(help="Drop items the user has seen.")] = True,
    out: Annotated[
        Path | None, typer.Option(help="CSV or Parquet: user_id,rank,item_id,score.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Users scored at once.")] = 1024,
    index: Annotated[
        str | None, typer.Option(help="exact, faiss_hnsw or faiss_ivf (default: the run's).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="valid or test: each user as `hydrarec evaluate` ranks that split (history "
            "before it, those items left out, exact retrieval scores); with --all-users, the "
            "users evaluated on it."
        ),
    ] = None,
) -> None:
    """Top-k recommendations for one user, a file of users, or all users.

    ``--split test --all-users --out recs.parquet`` writes what evaluation ranks, to score with
    your own metric code (docs/data.md, "Scoring offline").
    """
    from hydrarec.io.atomic import write_with
    from hydrarec.recommend.recommender import Recommender

    if sum([user is not None, users is not None, all_users]) != 1:
        raise typer.BadParameter("give exactly one of --user, --users, --all-users")
    if split is not None and split not in ("valid", "test"):
        raise typer.BadParameter(f"--split {split!r}: allowed: valid, test")
    rec = Recommender.load(run, index=index)
    known = rec.run.user_ids.raw_ids
    if user is not None:
        ids = _match_ids(pd.Series([user]), known)
    elif users is not None:
        ids = _match_ids(_read_ids(users, "user_id"), known)
    else:
        ids = list(known if split is None else rec.split_users(split))
    recs = rec.recommend(ids, k, exclude_seen=exclude_seen, as_of=split, batch_size=batch_size)
    df = recs.table(ids)
    if out is None:
        titles = rec.title(rec.item_index(list(df["item_id"])))
        table = Table("user", "rank", "item", "title", "score")
        for row, title in zip(df.itertuples(), titles, strict=True):
            table.add_row(
                str(row.user_id), str(row.rank), str(row.item_id), title, f"{row.score:.4f}"
            )
        console.print(table)
        return
    df["user_id"] = df["user_id"].astype(type(ids[0]) if ids else str)
    to_file = df.to_parquet if out.suffix == ".parquet" else df.to_csv
    write_with(out, lambda p: to_file(p, index=False))
    console.print(f"{len(df):,} recommendations for {len(ids):,} users written to {out}")


@app.command("add-items")
def add_items(
    run: Path,
    items: Annotated[Path, typer.Argument(help="CSV / Parquet: item_id, features, text columns.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Add new items to a trained run without retraining (vectors from their text + features)."""
    from hydrarec.run.catalogue import add_items_file

    added = add_items_file(run, items, progress=False if quiet else None)
    console.print(
        f"added {len(added.ids):,} items to {run} (catalogue indices {added.first_index}.."
        f"{added.n_items - 1}); the catalogue now has {added.n_items:,} items"
    )


@app.command()
def serve(
    run: Path,
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless told).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key (X-API-Key).")
    ] = None,
    index: Annotated[
        str | None, typer.Option(help="exact, faiss_hnsw or faiss_ivf (default: the run's).")
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = 1 << 20,
    max_batch: Annotated[
        int, typer.Option(help="Concurrent /recommend requests scored together (1: none).")
    ] = 64,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (costs CPU under heavy load).")
    ] = True,
    model_processes: Annotated[
        int | None,
        typer.Option(
            help="Processes that run the /recommend model, off the HTTP process's GIL; several "
            "score batches at once (0: in the HTTP process; default: one per core, up to 4)."
        ),
    ] = None,
    pin: Annotated[
        bool, typer.Option(help="Run each model process on its own share of the cores (Linux).")
    ] = True,
    header_timeout: Annotated[
        float,
        typer.Option(help="Seconds for a request's headers, from connection or last answer."),
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds for a request's whole body, from its headers (408).")
    ] = 10.0,
    keep_alive: Annotated[
        float, typer.Option(help="Seconds an idle connection stays open between requests.")
    ] = 5.0,
    max_connections: Annotated[
        int,
        typer.Option(
            help="Open connections per worker; over it, the one waiting longest for headers "
            "is closed."
        ),
    ] = 1000,
    max_header_bytes: Annotated[
        int, typer.Option(help="Request line and headers over this get 431.")
    ] = 16 * 1024,
    events: Annotated[
        str | None,
        typer.Option(
            help="Event log: an SQLite file (created if missing) or a postgresql:// URL. "
            "POST /events appends to it; /recommend reads each user's events at once."
        ),
    ] = None,
) -> None:
    """Serve the run over HTTP: /recommend, /predict, /items/{id}/similar, /docs."""
    from hydrarec.serving.connections import ConnectionLimits
    from hydrarec.serving.server import serve as run_serve

    run_serve(
        run,
        host=host,
        port=port,
        workers=workers,
        api_key_env=api_key_env,
        index=index,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        access_log=access_log,
        model_processes=model_processes,
        pin=pin,
        limits=ConnectionLimits(header_timeout, max_header_bytes, max_connections),
        body_timeout=body_timeout,
        keep_alive_timeout=keep_alive,
        events=events,
    )


@events_app.command("export")
def events_export(
    log: Annotated[str, typer.Argument(help="The event log: an SQLite file or postgresql:// URL.")],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")] = Path("events.parquet"),
) -> None:
    """Write every logged event to a Parquet file (user_id, item_id, timestamp, feedback
    columns, event_id, received), for a full retrain."""
    from hydrarec.online import export_events

    n = export_events(log, out)
    console.print(f"{n:,} events written to {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    fallback_data: Annotated[
        Path | None,
        typer.Option(
            help="A data folder tried last, after $HYDRAREC_DATA_DIR, the cache and a download "
            "(the Makefile passes ../shared/data)."
        ),
    ] = None,
) -> None:
    """Train the default multi-task model on MovieLens-100K and show what it learned."""
    from hydrarec.report.demo import run_demo

    run_demo(out, quiet=quiet, console=console, overrides=set_ or [], fallback=fallback_data)


@app.command()
def tune(
    config: Annotated[Path, typer.Option("--config", "-c", help="Base TOML config.")],
    space: Annotated[Path, typer.Option("--space", "-s", help="Search space TOML.")],
    trials: Annotated[int, typer.Option("--trials", "-n", help="Trials to run now.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the study's outputs.")],
    timeout: Annotated[
        float | None, typer.Option(help="Start no trial after this many seconds.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite OUT/study.db).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: OUT's name).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = 1,
    pruner: Annotated[str, typer.Option(help="median, hyperband or none.")] = "median",
    repeat: Annotated[int, typer.Option(help="Seeds averaged per trial.")] = 1,
    keep: Annotated[str, typer.Option(help="Trial runs kept: none, best or all.")] = "none",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Search hyper-parameters with Optuna; writes OUT/best.toml, trials.csv and report.html.

    Each trial trains the config with the space's values and is scored on the validation
    split (the config's train.monitor). The same command again continues the study; with
    --storage URL --study NAME, the command run on several machines works on one study
    (docs/tune.md).
    """
    from hydrarec.io.progress import Progress
    from hydrarec.tuning import tune as run_tune

    result = run_tune(
        config,
        space,
        out=out,
        trials=trials,
        timeout=timeout,
        storage=storage,
        study=study,
        jobs=jobs,
        pruner=pruner,
        repeat=repeat,
        keep=keep,
        progress=Progress(enabled=False if quiet else None),
    )
    counts = ", ".join(f"{n} {state}" for state, n in result.trials.items())
    console.print(f"study {result.study} in {result.storage}: {counts}")
    if result.best_value is None:
        console.print("no trial completed yet: no best.toml")
    else:
        table = Table("parameter", "best value")
        for key, value in result.best_params.items():
            table.add_row(key, escape(str(value)))
        console.print(table)
        console.print(f"best: trial {result.best_trial}, valid {result.best_value:.4f}")
        console.print(f"best config written to {result.best_config}")
    console.print(f"report written to {result.report}")


def main() -> None:
    try:
        app()
    except HydrarecError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")  # messages may hold [brackets]
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: the last completed checkpoint is intact")
        sys.exit(130)


if __name__ == "__main__":
    main()

"""``serve``: run the service under uvicorn; ``app_from_env``: the app factory each worker calls.

With one worker the app is built here, so a bad run fails before the port opens. With several,
uvicorn starts worker processes that import ``hydrarec.serving.server:app_from_env`` and build
their own app from environment variables (a process cannot be handed a Python object): the run
path, the index kind and the NAME of the variable holding the API key (never the key itself).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from hydrarec.errors import ConfigError
from hydrarec.rundir import RunDir
from hydrarec.serving.app import DEFAULT_MAX_BODY, create_app
from hydrarec.serving.model_process import cpu_count

ENV_RUN = "HYDRAREC_SERVE_RUN"
ENV_INDEX = "HYDRAREC_SERVE_INDEX"
ENV_KEY_NAME = "HYDRAREC_SERVE_API_KEY_ENV"
ENV_MAX_BODY = "HYDRAREC_SERVE_MAX_BODY"
ENV_MAX_BATCH = "HYDRAREC_SERVE_MAX_BATCH"
ENV_MODEL_PROCESSES = "HYDRAREC_SERVE_MODEL_PROCESSES"
ENV_PIN = "HYDRAREC_SERVE_PIN"


def api_key_from(env_name: str | None) -> str | None:
    """The API key held by the environment variable ``env_name`` (None: no key required)."""
    if env_name is None:
        return None
    key = os.environ.get(env_name, "")
    if not key:
        raise ConfigError(f"--api-key-env {env_name}: the environment variable is unset or empty")
    return key


def app_from_env() -> FastAPI:
    """The app of the run named by ``HYDRAREC_SERVE_RUN`` (uvicorn ``--factory`` target)."""
    if ENV_RUN not in os.environ:
        raise ConfigError(f"{ENV_RUN} is not set: start the service with `hydrarec serve RUN`")
    return create_app(
        os.environ[ENV_RUN],
        api_key=api_key_from(os.environ.get(ENV_KEY_NAME) or None),
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, DEFAULT_MAX_BODY)),
        index=os.environ.get(ENV_INDEX) or None,
        max_batch=int(os.environ.get(ENV_MAX_BATCH, 64)),
        model_processes=int(os.environ.get(ENV_MODEL_PROCESSES, 0)),
        pin=os.environ.get(ENV_PIN, "1") == "1",
    )


def serve(
    run: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    api_key_env: str | None = None,
    index: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_batch: int = 64,
    log_level: str = "info",
    access_log: bool = True,
    model_processes: int | None = None,
    pin: bool = True,
) -> None:
    """Serve ``run`` over HTTP until interrupted (binds loopback unless ``host`` says otherwise)."""
    import uvicorn

    RunDir(run).require()
    api_key_from(api_key_env)  # fail now, not in every worker
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if model_processes is None:  # one per core, up to 4 (each holds a copy of the model)
        model_processes = min(4, cpu_count())
    if model_processes < 0:
        raise ConfigError(f"--model-processes must be >= 0, got {model_processes}")
    if workers == 1:
        app = create_app(
            run,
            api_key_from(api_key_env),
            max_body_bytes,
            index,
            max_batch,
            model_processes,
            pin=pin,
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
        return
    os.environ[ENV_RUN] = str(Path(run).resolve())
    os.environ[ENV_INDEX] = index or ""
    os.environ[ENV_KEY_NAME] = api_key_env or ""
    os.environ[ENV_MAX_BODY] = str(max_body_bytes)
    os.environ[ENV_MAX_BATCH] = str(max_batch)
    os.environ[ENV_MODEL_PROCESSES] = str(model_processes)
    os.environ[ENV_PIN] = "1" if pin else "0"
    uvicorn.run(
        "hydrarec.serving.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
    )

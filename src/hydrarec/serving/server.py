"""``serve``: run the service under uvicorn; ``app_from_env``: the app factory each worker calls.

With one worker the app is built here, so a bad run fails before the port opens. With several,
uvicorn starts worker processes that import ``hydrarec.serving.server:app_from_env`` and build
their own app from environment variables (a process cannot be handed a Python object): the run
path, the index kind and the NAME of the variable holding the API key (never the key itself).
With one worker, SIGHUP and ``POST /admin/reload`` swap the served run in place (``served.py``);
with several, SIGHUP reaches uvicorn's supervisor, which restarts the workers one at a time (each
loads the run path again before it takes connections) and the route answers 409.

Connections are served by ``connections.GuardedHttpTools`` (deadline and size limit on request
headers, a cap on connections per worker) and bodies read under a deadline (``limits``): slow or
half-sent clients are cut off instead of holding the service (issue 21).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from hydrarec.errors import ConfigError
from hydrarec.online.store import check_target
from hydrarec.run.rundir import RunDir
from hydrarec.serving.app import DEFAULT_MAX_BODY, create_app
from hydrarec.serving.connections import ConnectionLimits, GuardedHttpTools
from hydrarec.serving.limits import DEFAULT_BODY_TIMEOUT
from hydrarec.serving.model_process import cpu_count

ENV_RUN = "HYDRAREC_SERVE_RUN"
ENV_INDEX = "HYDRAREC_SERVE_INDEX"
ENV_KEY_NAME = "HYDRAREC_SERVE_API_KEY_ENV"
ENV_MAX_BODY = "HYDRAREC_SERVE_MAX_BODY"
ENV_MAX_BATCH = "HYDRAREC_SERVE_MAX_BATCH"
ENV_MODEL_PROCESSES = "HYDRAREC_SERVE_MODEL_PROCESSES"
ENV_PIN = "HYDRAREC_SERVE_PIN"
ENV_BODY_TIMEOUT = "HYDRAREC_SERVE_BODY_TIMEOUT"
ENV_HEADER_TIMEOUT = "HYDRAREC_SERVE_HEADER_TIMEOUT"
ENV_MAX_HEADER = "HYDRAREC_SERVE_MAX_HEADER"
ENV_MAX_CONNECTIONS = "HYDRAREC_SERVE_MAX_CONNECTIONS"
ENV_EVENTS = "HYDRAREC_SERVE_EVENTS"
DEFAULT_KEEP_ALIVE = 5.0  # seconds an idle connection stays open between requests (uvicorn's)
# file descriptors besides the connections: model processes' pipes, the run's files, the loop's
FD_RESERVE = 256


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
    defaults = ConnectionLimits()
    GuardedHttpTools.limits = ConnectionLimits(
        header_timeout=float(os.environ.get(ENV_HEADER_TIMEOUT, defaults.header_timeout)),
        max_header_bytes=int(os.environ.get(ENV_MAX_HEADER, defaults.max_header_bytes)),
        max_connections=int(os.environ.get(ENV_MAX_CONNECTIONS, defaults.max_connections)),
    )
    return create_app(
        os.environ[ENV_RUN],
        api_key=api_key_from(os.environ.get(ENV_KEY_NAME) or None),
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, DEFAULT_MAX_BODY)),
        index=os.environ.get(ENV_INDEX) or None,
        max_batch=int(os.environ.get(ENV_MAX_BATCH, 64)),
        model_processes=int(os.environ.get(ENV_MODEL_PROCESSES, 0)),
        pin=os.environ.get(ENV_PIN, "1") == "1",
        body_timeout=float(os.environ.get(ENV_BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)),
        events=os.environ.get(ENV_EVENTS) or None,
        reloadable=False,  # POST /admin/reload would reach one worker; SIGHUP: uvicorn's restart
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
    limits: ConnectionLimits | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE,
    events: str | None = None,
) -> None:
    """Serve ``run`` over HTTP until interrupted (binds loopback unless ``host`` says otherwise).
    ``limits``: on each worker's connections (``connections.ConnectionLimits``); ``body_timeout``:
    seconds for a request's whole body; ``keep_alive_timeout``: an idle connection's;
    ``events``: the event log (a path or a ``postgresql://`` URL; ``serving/event_log.py``)."""
    import uvicorn

    RunDir(run).require()
    api_key_from(api_key_env)  # fail now, not in every worker
    if events is not None:  # a mistaken path or URL stops here; an unavailable log does not
        check_target(events)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if model_processes is None:  # one per core, up to 4 (each holds a copy of the model)
        model_processes = min(4, cpu_count())
    if model_processes < 0:
        raise ConfigError(f"--model-processes must be >= 0, got {model_processes}")
    limits = limits or ConnectionLimits()
    for name, value in (("--body-timeout", body_timeout), ("--keep-alive", keep_alive_timeout)):
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    make_room_for(limits.max_connections)
    GuardedHttpTools.limits = limits
    server: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "http": GuardedHttpTools,
        "timeout_keep_alive": keep_alive_timeout,
    }
    if workers == 1:
        app = create_app(
            run,
            api_key_from(api_key_env),
            max_body_bytes,
            index,
            max_batch,
            model_processes,
            pin=pin,
            body_timeout=body_timeout,
            events=events,
        )
        uvicorn.run(app, **server)
        return
    # absolute, links kept: a worker restarted on SIGHUP reads runs/current's target anew
    os.environ[ENV_RUN] = os.path.abspath(run)
    os.environ[ENV_INDEX] = index or ""
    os.environ[ENV_KEY_NAME] = api_key_env or ""
    os.environ[ENV_MAX_BODY] = str(max_body_bytes)
    os.environ[ENV_MAX_BATCH] = str(max_batch)
    os.environ[ENV_MODEL_PROCESSES] = str(model_processes)
    os.environ[ENV_PIN] = "1" if pin else "0"
    os.environ[ENV_BODY_TIMEOUT] = str(body_timeout)
    os.environ[ENV_HEADER_TIMEOUT] = str(limits.header_timeout)
    os.environ[ENV_MAX_HEADER] = str(limits.max_header_bytes)
    os.environ[ENV_MAX_CONNECTIONS] = str(limits.max_connections)
    os.environ[ENV_EVENTS] = events or ""  # workers share the log: SQLite serialises writers
    uvicorn.run("hydrarec.serving.server:app_from_env", factory=True, workers=workers, **server)


def make_room_for(connections: int) -> None:
    """Raise this process's limit on open files (``ulimit -n``) to hold ``connections`` and
    ``FD_RESERVE`` more, up to the hard limit; a ConfigError if the hard limit is lower. Over the
    limit the server could not accept, and every client would be refused."""
    try:
        import resource
    except ImportError:  # not Unix: nothing to raise
        return
    need = connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise ConfigError(
                f"--max-connections {connections} needs {need} open files and this process may "
                f"open {hard} (ulimit -Hn): lower it to {max(1, hard - FD_RESERVE)} or less"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

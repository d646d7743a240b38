"""What every contactsync plugin (taps, targets, mapper) does alike at start and at its end.

* At start: numbers given as text are read as numbers (Meltano hands a number setting from an
  environment variable or `meltano config set` over as text), and settings that cannot apply
  are refused naming the setting (``setting_problems``), before any input is read.
* At the end of a failed run: one final ERROR line saying what happened and what to do; the
  traceback only at DEBUG (`meltano --log-level=debug run …`). A plugin whose output pipe was
  closed says so at WARNING: the plugin that stopped reading has its own error line.
* While it works: the SDK's ``http_request_duration`` (per attempt) and ``http_request_count``
  (per endpoint) METRIC lines for every request of our API clients, and a progress line every
  ``progress_interval_seconds`` on long reads (taps) and writes (targets).
* ``--about``: the class docstring as one paragraph, so that the Markdown renders as text.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any, ClassVar

import click
from singer_sdk import metrics
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.plugin_base import SingerCommand
from singer_sdk.singerlib import SingerMessageType
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR, extend_validator_with_defaults

from contactsync import settings as cs
from contactsync.http import RequestEvent, observe_requests
from contactsync.sync.progress import Progress

#: Packages whose exceptions carry a message written for the person running the sync.
OUR_PACKAGES = (
    "contactsync",
    "contactsync_singer",
    "contactsync_mapper",
    "tap_pipeliner_contacts",
    "tap_outlook_contacts",
    "target_outlook_contacts",
    "target_pipeliner_contacts",
)


def final_message(exc: BaseException) -> str:
    """The last ERROR line of a failed plugin: our messages as they are, others with a hint."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module in OUR_PACKAGES or (isinstance(exc, ValueError | OSError) and module != "builtins"):
        return text
    return (
        f"unexpected {type(exc).__name__}: {text}. Rerun with `--log-level=debug` (meltano) or "
        "LOGLEVEL=DEBUG for the traceback, and report it with that log"
    )


class ContactsyncCommand(SingerCommand):
    """singer-sdk's command, with the failure reporting described in the module docstring."""

    def invoke(self, ctx: click.Context) -> Any:
        """singer-sdk's, except that refused settings end in one ERROR line naming them all."""
        logging.captureWarnings(capture=True)
        warnings.filterwarnings("once", category=DeprecationWarning)
        sys.excepthook = self.excepthook
        try:
            return click.Command.invoke(self, ctx)
        except ConfigValidationError as exc:
            errors = "; ".join(str(e) for e in exc.errors) or str(exc)
            self.logger.error(
                "settings refused: %s. Fix them in the plugin's config (`%s --about` lists every "
                "setting)",
                errors,
                self.name,
            )
            ctx.exit(1)

    def excepthook(
        self,
        exc_type: type[BaseException],
        exc_value: BaseException,
        exc_traceback: TracebackType | None,
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc_value, exc_traceback)
            return
        self.logger.debug("traceback", exc_info=(exc_type, exc_value, exc_traceback))
        plugin = ContactsyncPlugin.running
        if plugin is not None:
            plugin.on_fatal(exc_value)
        if ContactsyncPlugin.request_metrics is not None:
            ContactsyncPlugin.request_metrics.close()  # before the final line, not after it
        if isinstance(exc_value, BrokenPipeError):
            self.logger.warning(
                "stopped: the next plugin of the pipeline stopped reading (its own error says why)"
            )
            _silence_stdout()
            return
        self.logger.error("%s", final_message(exc_value))


def read_settings(config: Mapping[str, Any] | PurePath | str | list[PurePath | str] | None) -> dict:
    """The settings as one dict of our own: singer-sdk's ``config`` argument (a dict, a JSON
    file, or several, later files winning), read as singer-sdk reads it."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    paths = [config] if isinstance(config, str | PurePath) else config
    settings: dict[str, Any] = {}
    for path in paths:
        settings.update(json.loads(Path(path).read_text()))
    return settings


#: Marks the dict of settings handed to singer-sdk, to check that it keeps that very dict.
PROBE = "__contactsync_settings__"


def validate_settings(plugin: Any, settings: dict, *, raise_errors: bool) -> None:
    """singer-sdk's validation of the settings (defaults filled in, errors worded as it words
    them), for settings it took from the environment before they were normalised."""
    schema = plugin.config_jsonschema
    plugin.append_builtin_config(schema)
    validator = extend_validator_with_defaults(DEFAULT_JSONSCHEMA_VALIDATOR)(schema)
    errors = []
    for error in validator.iter_errors(settings):
        where = "][".join(repr(index) for index in error.path)
        errors.append(error.message + (f" in config[{where}]" if where else ""))
    if errors and raise_errors:
        raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
    if errors:
        plugin.logger.warning("Config validation failed")


def _silence_stdout() -> None:
    """A closed pipe must not add a second traceback when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class RequestMetrics:
    """singer-sdk's request metrics for the requests of our own API clients (which are not SDK
    streams): a timer point per attempt, a counter per endpoint logged at the SDK's interval and
    when the process ends."""

    def __init__(self) -> None:
        self.logger = metrics.get_metrics_logger()
        self.counters: dict[str, metrics.Counter] = {}
        self.stop = observe_requests(self.observe)
        atexit.register(self.close)

    def observe(self, event: RequestEvent) -> None:
        ok = event.status is not None and event.status < 400
        tags = {
            metrics.Tag.ENDPOINT: event.endpoint,
            metrics.Tag.HTTP_STATUS_CODE: event.status,
            metrics.Tag.STATUS: metrics.Status.SUCCEEDED if ok else metrics.Status.FAILED,
            "method": event.method,
        }
        point = metrics.Point("timer", metrics.Metric.HTTP_REQUEST_DURATION, event.seconds, tags)
        metrics.log(self.logger, point)
        counter = self.counters.get(event.endpoint)
        if counter is None:
            counter = metrics.Counter(
                metrics.Metric.HTTP_REQUEST_COUNT, {metrics.Tag.ENDPOINT: event.endpoint}
            )
            self.counters[event.endpoint] = counter
        counter.increment()

    def close(self) -> None:
        self.stop()
        for counter in self.counters.values():
            if counter.value:
                counter.exit()
        self.counters.clear()


class ContactsyncPlugin:
    """Mixin for our singer-sdk plugins; put it before the SDK base class."""

    #: What the progress line counts (None: no progress line).
    progress_what: ClassVar[str | None] = None
    request_metrics: ClassVar[RequestMetrics | None] = None

    #: The plugin instance of this process, for the failure report of its command.
    running: ClassVar[ContactsyncPlugin | None] = None
    name: str
    config_jsonschema: ClassVar[dict]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``--about`` shows the class docstring as one paragraph, so that Markdown renders it
        as text (singer-sdk reads the description from ``__doc__``)."""
        super().__init_subclass__(**kwargs)
        cls.__doc__ = " ".join((cls.__doc__ or "").split())

    def __init__(
        self,
        *,
        config: dict | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        **kwargs: Any,
    ) -> None:
        """singer-sdk's, with the settings read as their schema means them before it validates
        them, and then the settings that cannot apply refused (``setting_problems``)."""
        #: The version of the full listing each stream is under way with (taps; see ``listing``).
        self.listing_versions: dict[str, int] = {}
        settings = read_settings(config)
        cs.normalize_text_settings(settings, self.config_jsonschema)
        if parse_env_config:
            settings[PROBE] = True  # not empty: singer-sdk would replace an empty dict
        super().__init__(  # type: ignore[call-arg]
            config=settings,
            parse_env_config=parse_env_config,
            # `--config ENV`: singer-sdk adds the environment's settings to `settings` (the dict
            # it keeps as the config) as text; they are read and validated just below.
            validate_config=validate_config and not parse_env_config,
            **kwargs,
        )
        if parse_env_config:
            if settings.pop(PROBE, None) is None or PROBE in self.config:
                raise RuntimeError("singer-sdk no longer keeps the config dict it is given")
            cs.normalize_text_settings(settings, self.config_jsonschema)
            validate_settings(self, settings, raise_errors=validate_config)
        problems = self.setting_problems()
        if problems and validate_config:
            raise ConfigValidationError("Config validation failed", errors=problems)
        ContactsyncPlugin.running = self
        if ContactsyncPlugin.request_metrics is None:
            ContactsyncPlugin.request_metrics = RequestMetrics()

    def write_message(self, message: Any) -> None:
        """A tap's records go out here: they carry the version of a listing under way, and they
        are what its progress line counts."""
        if getattr(message, "type", None) == SingerMessageType.RECORD:
            if self.listing_versions and message.version is None:
                message.version = self.listing_versions.get(message.stream)
            super().write_message(message)  # type: ignore[misc]
            if self.progress_what:
                self.progress.add()
            return
        super().write_message(message)  # type: ignore[misc]

    @property
    def progress(self) -> Progress:
        """The progress line of this run (created on first use)."""
        found: Progress | None = self.__dict__.get("_progress")
        if found is None:
            interval = float(self.config.get("progress_interval_seconds") or 30)
            what = self.progress_what or "records"
            found = self.__dict__["_progress"] = Progress(self.logger, what, interval)
        return found

    def setting_problems(self) -> list[str]:
        """Settings that cannot apply to this plugin as configured (empty: all fine)."""
        return cs.job_setting_problems(self.name, self.config, os.environ)

    def on_fatal(self, exc: BaseException) -> None:
        """Called once when the run ends on ``exc``, before the final error line."""

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()  # type: ignore[misc]
        command.__class__ = ContactsyncCommand
        return command

"""Graph's ``$batch`` run to completion: chunks of at most 20 requests, as many batches in flight as
the mailbox allows, each inner 429/503 re-queued after its own ``Retry-After``, answered requests
kept, and a whole batch lost without an answer counted toward giving up.

:class:`BatchExecutor` is mixed into :class:`~contactsync.outlook.graph_api.GraphClient`, which
provides the transport (``_http``, ``_headers``, ``_count``, ``_refresh_after_401``,
``_auth_error``), the mailbox's pacer and pool, the clock and the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from contactsync.http import (
    BudgetExceeded,
    HttpError,
    HttpStatusError,
    TransportError,
    backoff_delay,
    parse_retry_after,
    redact_url,
)
from contactsync.outlook import pacing
from contactsync.outlook.graph_protocol import (
    PREFER_IMMUTABLE_ID,
    GraphAuthError,
    GraphError,
    _auth_header,
    _describe,
    _graph_error_of,
    _json_or_none,
    _scrub,
)

if TYPE_CHECKING:
    import random

    from contactsync.http import HttpClient
    from contactsync.outlook.graph_api import GraphSettings

log = logging.getLogger("contactsync.outlook.graph_api")

#: Whole ``$batch`` requests lost in a row (no answer) before the rest is not sent.
MAX_LOST_BATCHES = 2


@dataclass
class _Op:
    """One inner request of ``$batch``, through its retries."""

    index: int
    method: str
    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    create: bool = False
    attempts: int = 0
    not_before: float = 0.0
    first_sent: float | None = None
    auth_retried: bool = False


@dataclass(frozen=True)
class _Outcome:
    """The final answer to one inner request (``status`` 0: none came)."""

    status: int
    body: Any
    error: str | None = None
    code: str | None = None


class _AuthFailed(Exception):
    def __init__(self, error: GraphAuthError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _BatchAnswer:
    """What one ``$batch`` POST produced: inner answers by id, or why there are none."""

    responses: dict[str, Mapping[str, Any]] | None = None
    failure: str | None = None
    #: The batch may have been processed although no usable answer came back.
    doubt: bool = False
    #: No answer at all (transport): counts toward giving up on an unreachable service.
    lost: bool = False
    #: The whole batch was refused with a retryable status (503 for creates): re-queue all.
    retry_status: int | None = None
    retry_after: float | None = None
    #: The Authorization header the batch was sent with (to refresh only once per token).
    auth_used: str | None = None


def _throttled(chunk: Sequence[_Op], answer: _BatchAnswer) -> int:
    """How many requests of ``chunk`` the answer refused with 429 (all, for a refused batch)."""
    if answer.retry_status is not None:
        return len(chunk) if answer.retry_status == 429 else 0
    responses = answer.responses or {}
    return sum(
        1
        for op in chunk
        if isinstance(inner := responses.get(str(op.index)), Mapping)
        and str(inner.get("status")) == "429"
    )


class BatchExecutor:
    """The ``$batch`` half of the Graph client (see the module docstring for what it needs)."""

    if TYPE_CHECKING:
        settings: GraphSettings
        _http: HttpClient
        _pacer: pacing.MailboxPacer
        _clock: Callable[[], float]
        _sleep: Callable[[float], None]
        _rng: random.Random
        _pace_size: int
        _gate: float

        def _batch_pool(self) -> ThreadPoolExecutor: ...
        def _headers(self, headers: dict[str, str]) -> dict[str, str]: ...
        def _count(self, name: str, n: int = 1) -> None: ...
        def _refresh_after_401(self, used: str | None) -> None: ...
        def _auth_error(self, code: str | None, message: str | None) -> GraphAuthError: ...

    def _batches_in_flight(self) -> tuple[int, bool]:
        """How many ``$batch`` requests may be in flight for this mailbox, and whether their
        requests must be ``dependsOn``-chained.

        Graph's throttling page ("Outlook service limits for JSON batching"): Graph sends the
        requests of a batch without ``dependsOn`` to Outlook "up to four … at a time", run in
        parallel, each counting against the mailbox's four concurrent requests; with
        ``dependsOn`` "one request from the batch at a time", so "up to four such batch
        requests" may run at once. One unordered batch keeps 4 requests busy, as 4 chained ones
        do; a second unordered one in flight would be throttled. A limiter shared by several
        clients of one mailbox would decide here.
        """
        in_flight = max(1, min(self.settings.max_in_flight, self.settings.policy.max_concurrency))
        return in_flight, in_flight > 1

    def _execute(self, ops: list[_Op]) -> dict[int, _Outcome]:
        """Send ``ops`` through ``$batch``: ``batch_size`` per request, as many at once as
        :meth:`_batches_in_flight` says.

        Inner 429/503 (and 5xx for repeatable methods) are re-queued after their own
        ``Retry-After``; answered requests are kept. Returns the final outcome by ``op.index``.
        Raises :class:`GraphAuthError` when the token is refused after a refresh and nothing
        of this call was done; otherwise such a failure is reported per item.
        """
        results: dict[int, _Outcome] = {}
        if not ops:
            return results
        settings = self.settings
        workers, chained = self._batches_in_flight()
        pending: list[_Op] = sorted(ops, key=lambda o: o.index)
        in_flight: dict[Future[_BatchAnswer], list[_Op]] = {}
        stop: GraphError | None = None
        done_any = False
        lost_in_row = 0
        # After a throttled answer nothing new is sent before its Retry-After, and the next
        # batches carry only as many requests as the throttled one got through (one more after
        # each clean answer): Graph's budget frees up gradually, and full batches sent the
        # moment it allows one request would answer 429 to nearly all of them. Kept across
        # calls: the engine writes a run in many small calls.
        size, gate = min(self._pace_size or settings.batch_size, settings.batch_size), self._gate
        pool = self._batch_pool()
        while pending or in_flight:
            now = self._clock()
            if stop is not None and pending:
                for op in pending:
                    results[op.index] = _Outcome(0, None, f"not sent: {stop}")
                pending = []
            while stop is None and len(in_flight) < workers and now >= gate:
                room = self._pacer.room()  # the budget's remainder: a smaller batch now
                take = min(size, room) if room else size
                ready = [op for op in pending if op.not_before <= now][:take]
                if not ready:
                    break
                taken = {id(op) for op in ready}
                pending = [op for op in pending if id(op) not in taken]
                for op in ready:
                    if op.first_sent is None:
                        op.first_sent = now
                    op.attempts += 1
                in_flight[pool.submit(self._post_batch, ready, chained)] = ready
            if not in_flight:
                if pending:
                    due = max(gate, min(op.not_before for op in pending))
                    self._sleep(max(0.0, due - now))
                continue
            # Wake up for a pending request only when it could be sent: with every worker
            # busy, wait for an answer (a zero timeout here spun this loop while a batch was
            # in flight: half the target's CPU, issue #15).
            timeout = None
            if pending and stop is None and len(in_flight) < workers:
                timeout = max(0.0, max(gate, min(op.not_before for op in pending)) - now)
            finished, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
            for future in finished:
                chunk = in_flight.pop(future)
                try:
                    answer = future.result()
                except _AuthFailed as exc:
                    stop = exc.error
                    for op in chunk:
                        results[op.index] = _Outcome(0, None, f"not written: {stop}")
                    continue
                except GraphError as exc:  # e.g. the token provider failed
                    stop = exc
                    for op in chunk:
                        results[op.index] = _Outcome(0, None, f"not sent: {exc}")
                    continue
                lost_in_row = lost_in_row + 1 if answer.lost else 0
                if answer.lost and lost_in_row >= MAX_LOST_BATCHES and stop is None:
                    stop = GraphError(
                        f"{MAX_LOST_BATCHES} $batch requests in a row got no answer from "
                        f"{settings.graph_url} ({answer.failure}); the rest was not sent. "
                        "Check the network path to Microsoft Graph and run again."
                    )
                requeue, auth_error = self._settle(chunk, answer, results)
                throttled = _throttled(chunk, answer)
                if throttled:
                    size = max(1, len(chunk) - throttled)
                    gate = max([gate, *(op.not_before for op in requeue)])
                else:
                    size = min(settings.batch_size, size + 1)
                done_any = done_any or any(
                    op.index in results and 200 <= results[op.index].status < 300 for op in chunk
                )
                if auth_error is not None and stop is None:
                    stop = auth_error
                pending.extend(requeue)
                pending.sort(key=lambda o: o.index)
        self._pace_size, self._gate = size, gate
        if isinstance(stop, GraphAuthError) and not done_any:
            raise stop
        return results

    def _settle(
        self, chunk: list[_Op], answer: _BatchAnswer, results: dict[int, _Outcome]
    ) -> tuple[list[_Op], GraphAuthError | None]:
        """Record final outcomes of ``chunk``; return the ops to send again."""
        now = self._clock()
        requeue: list[_Op] = []
        auth_error: GraphAuthError | None = None
        if answer.responses is None and answer.retry_status is None:
            for op in chunk:
                if op.create and answer.doubt:
                    error = (
                        f"the $batch request failed ({answer.failure}); this contact may or may "
                        "not have been created: the next run finds it by its Pipeliner stamp"
                    )
                else:
                    error = f"the $batch request failed: {answer.failure}"
                results[op.index] = _Outcome(0, None, error)
            return requeue, None
        for op in chunk:
            if answer.retry_status is not None:
                status, headers, body = answer.retry_status, {}, None
                retry_after = answer.retry_after
            else:
                inner = (answer.responses or {}).get(str(op.index))
                if inner is None:
                    if op.create:
                        results[op.index] = _Outcome(
                            0,
                            None,
                            "the $batch answer had no response for this request; this contact "
                            "may or may not have been created: the next run finds it by its "
                            "Pipeliner stamp",
                        )
                        continue
                    status, headers, body, retry_after = 503, {}, None, None
                else:
                    status = int(inner.get("status") or 0)
                    raw_headers = inner.get("headers")
                    headers = (
                        {str(k).lower(): str(v) for k, v in raw_headers.items()}
                        if isinstance(raw_headers, Mapping)
                        else {}
                    )
                    body = inner.get("body")
                    retry_after = parse_retry_after(headers.get("retry-after"))
            if status == 401:
                if op.auth_retried:
                    code, message = _graph_error_of(body)
                    auth_error = auth_error or self._auth_error(code, message)
                    results[op.index] = _Outcome(401, body, None, code)
                    continue
                op.auth_retried = True
                try:
                    self._refresh_after_401(answer.auth_used)
                except GraphAuthError as exc:
                    auth_error = auth_error or exc
                    results[op.index] = _Outcome(401, body, f"not written: {exc}")
                    continue
                self._count("inner_retries")
                op.not_before = now
                requeue.append(op)
                continue
            if status == 424:
                # Not run: a request it was chained behind failed (JSON batching: "Failed
                # Dependency"). Sent again with the rest, not counted as an attempt.
                op.attempts -= 1
                op.not_before = max((o.not_before for o in requeue), default=now)
                requeue.append(op)
                continue
            if status == 429:
                self._count("inner_throttled")
            retryable = {429, 503} if op.create else {429, 500, 502, 503, 504}
            if status not in retryable:
                code, _ = _graph_error_of(body)
                results[op.index] = _Outcome(status, body, None, code)
                continue
            give_up = self._give_up(op, retry_after, now)
            if give_up is not None:
                code, message = _graph_error_of(body)
                described = _describe(code, message, status)
                results[op.index] = _Outcome(status, body, f"{described} ({give_up})", code)
                continue
            delay = (
                retry_after
                if retry_after is not None
                else backoff_delay(op.attempts, self.settings.policy, self._rng)
            )
            op.not_before = now + delay
            self._count("inner_retries")
            log.info(
                "$batch: %s %s answered %d; retry %d in %.2f s",
                op.method,
                redact_url(op.url.split("?", 1)[0]),
                status,
                op.attempts,
                delay,
            )
            requeue.append(op)
        return requeue, auth_error

    def _give_up(self, op: _Op, retry_after: float | None, now: float) -> str | None:
        policy = self.settings.policy
        # A 429 that says how long to wait is a queue, not a failure: only time bounds it.
        if op.attempts >= policy.max_attempts and retry_after is None:
            return (
                f"gave up after {op.attempts} attempts (HttpPolicy.max_attempts); Microsoft "
                "Graph is throttling this mailbox, try again later"
            )
        if retry_after is not None and retry_after > policy.max_retry_after:
            return (
                f"Graph asked to wait {retry_after:.0f} s, more than "
                f"HttpPolicy.max_retry_after={policy.max_retry_after:g} s; try again later"
            )
        delay = retry_after if retry_after is not None else 0.0
        started = op.first_sent if op.first_sent is not None else now
        if now + delay - started > policy.total_budget:
            return (
                f"gave up after {now - started:.1f} s (HttpPolicy.total_budget "
                f"{policy.total_budget:g} s); try again later"
            )
        return None

    def _post_batch(self, chunk: list[_Op], chained: bool = False) -> _BatchAnswer:
        """POST one ``$batch`` (runs in a worker thread); ``chained``: each request
        ``dependsOn`` the one before, so Graph runs them one at a time."""
        creates = any(op.create for op in chunk)
        requests_ = []
        for op in chunk:
            inner: dict[str, Any] = {"id": str(op.index), "method": op.method, "url": op.url}
            if op.headers:
                inner["headers"] = dict(op.headers)
            if op.body is not None:
                inner["body"] = op.body
            if chained and requests_:
                inner["dependsOn"] = [requests_[-1]["id"]]
            requests_.append(inner)
        payload = {"requests": requests_}
        self._count("batches")
        expected = (503,) if creates else ()
        # Graph runs up to 4 requests of an unordered batch at once, a chained one at a time.
        slots = 1 if chained else min(len(chunk), pacing.BATCH_PARALLELISM)
        for attempt in (1, 2):
            try:
                grant = self._pacer.acquire(len(chunk), slots)
                try:
                    response = self._http.request(
                        "POST",
                        "$batch",
                        json=payload,
                        headers=self._headers({"Prefer": PREFER_IMMUTABLE_ID}),
                        idempotent=not creates,
                        expected=expected,
                    )
                finally:
                    self._pacer.release(grant)
            except HttpStatusError as exc:
                if exc.status == 401 and attempt == 1:
                    try:
                        self._refresh_after_401(_auth_header(exc.response))
                    except GraphAuthError as refused:
                        raise _AuthFailed(refused) from exc
                    continue
                body = _json_or_none(exc.response)
                code, message = _graph_error_of(body)
                if exc.status == 401:
                    raise _AuthFailed(self._auth_error(code, message)) from exc
                detail = f"{exc.status} {_describe(code, message, exc.status)}"
                doubt = creates and exc.status >= 500
                if exc.status == 429:
                    detail += " (still throttled after the retry policy's attempts)"
                return _BatchAnswer(failure=detail, doubt=doubt)
            except (TransportError, BudgetExceeded) as exc:
                return _BatchAnswer(failure=_scrub(str(exc)), doubt=creates, lost=True)
            except HttpError as exc:  # pragma: no cover - OriginRefused cannot happen here
                return _BatchAnswer(failure=_scrub(str(exc)), doubt=False)
            used = response.request.headers.get("Authorization") if response.request else None
            if response.status_code == 503:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return _BatchAnswer(retry_status=503, retry_after=retry_after, auth_used=used)
            body = _json_or_none(response)
            answers = body.get("responses") if isinstance(body, Mapping) else None
            if not isinstance(answers, list):
                return _BatchAnswer(
                    failure=f"the $batch answer ({response.status_code}) had no 'responses' list",
                    doubt=creates,
                )
            by_id: dict[str, Mapping[str, Any]] = {}
            for answer in answers:
                if isinstance(answer, Mapping) and answer.get("id") is not None:
                    by_id[str(answer["id"])] = answer
            return _BatchAnswer(responses=by_id, auth_used=used)
        raise AssertionError("unreachable")  # pragma: no cover

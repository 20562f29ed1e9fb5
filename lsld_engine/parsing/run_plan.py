"""One run of ``parse`` / ``extract`` (one machine or ``--ray``): what is left to do, and how the run ends.

Every command run follows the same plan::

    items (all inputs) - done (already in --out) -> todo, cut to --limit -> Summary
    work()  -> the summary lines, status 0 (all ok) or 1 (some videos failed)
            -> Ctrl-C: "PROG: interrupted; <where the finished videos are>, run again to resume" + summary, 130
            -> a full disk: one OutputError line saying what was written and how to resume (status 2)
            -> a failure the caller names (``job_failed``, e.g. a Ray job): "PROG: error: ...", status 2

:class:`RunPlan` holds the counts; :meth:`RunPlan.execute` runs the work and turns its ending into
those messages. The commands (:mod:`lsld_engine.commands.parse`, ``extract``, ``scale``) only say
what the work is and what their messages name.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from lsld_engine.parsing.pipeline import Summary
from lsld_engine.parsing.video_inputs import Skipped, VideoInput

#: Exit statuses of a run (``1``: some videos failed; ``2``: a usage / output error; ``130``: Ctrl-C).
OK, SOME_FAILED, ERROR, INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunPlan:
    """What a run does: ``todo`` (the inputs left, in input order, cut to ``limit``) and its
    :class:`~lsld_engine.parsing.pipeline.Summary` (``skipped`` = inputs already done).

    ``prog``: the command's name in messages; ``what``: the summary's verb (``parsed`` /
    ``extracted``); ``kept``: where finished videos are, for the interrupt message;
    ``verbose``: the summary lists what folder walks skipped.
    """

    items: list[VideoInput]
    todo: list[VideoInput]
    summary: Summary
    prog: str = "lsld-engine"
    what: str = "parsed"
    kept: str = "finished videos are kept"
    verbose: bool = False

    @classmethod
    def make(cls, items: Iterable[VideoInput], done: set[str] | Iterable[str] = (), *, limit: int | None = None,
             walk: Skipped | None = None, **messages) -> "RunPlan":
        """The plan over ``items`` when the ids in ``done`` are finished; ``limit``: at most this many
        of the rest (``--limit``); ``messages``: ``prog``, ``what``, ``kept``, ``verbose``."""
        items = list(items)
        done = set(done)
        todo = [i for i in items if i.video_id not in done]
        if limit is not None:
            todo = todo[:limit]
        summary = Summary(total=len(items), skipped=sum(i.video_id in done for i in items), walk=walk)
        return cls(items, todo, summary, **messages)

    def report(self) -> int:
        """Print the summary lines (stderr); the status: 1 when some videos failed, else 0."""
        print(self.summary.format(self.what, verbose=self.verbose), file=sys.stderr)
        return SOME_FAILED if self.summary.failed else OK

    def execute(self, work: Callable[[], object], *, cleanup: Callable[[], object] | None = None,
                abort: Callable[[], object] | None = None,
                disk_full: Callable[[OSError], str] | None = None,
                job_failed: Callable[[BaseException], str | None] | None = None,
                report: bool = True) -> int | None:
        """Run ``work()`` (nothing when ``todo`` is empty) and end the run.

        ``cleanup()``: always, after ``work`` (close the backend, stop the cluster); ``abort()``: when
        ``work`` raised anything (drop a half-written shard); ``disk_full(error)``: the message of
        the :class:`~lsld_engine.records.outputs.OutputError` raised for a full disk (None: a full disk is
        not handled here); ``job_failed(error)``: the ``PROG: error:`` line of a failure this
        command knows (status 2), or None to re-raise. Returns the status, or None after a finished
        ``work`` when ``report`` is False (the caller finishes, then calls :meth:`report`).
        """
        from lsld_engine.records.outputs import OutputError, is_disk_full

        try:
            if self.todo:
                work()
        except KeyboardInterrupt:
            if abort is not None:
                abort()
            print(f"{self.prog}: interrupted; {self.kept}, run again to resume\n"
                  + self.summary.format(self.what, verbose=self.verbose), file=sys.stderr)
            return INTERRUPTED
        except BaseException as e:
            if abort is not None:
                abort()
            if disk_full is not None and isinstance(e, OSError) and is_disk_full(e):
                raise OutputError(disk_full(e)) from None
            msg = job_failed(e) if job_failed is not None else None
            if msg is None:
                raise
            print(f"{self.prog}: error: {msg}", file=sys.stderr)
            return ERROR
        finally:
            if cleanup is not None:
                cleanup()
        return self.report() if report else None

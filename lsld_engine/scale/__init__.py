"""Scale out: parse and extract video archives on a Ray cluster with Ray Data (``--ray [ADDRESS]``).

The same per-video code as one machine, as Ray Data operators::

    sources  list inputs (folders, --list, globs; local or any pyarrow filesystem)   -> rows (path, video_id)
    stages   decode    CPU tasks: decode_stream with the per-file timeout            -> frames, audio
             encode    actor pool (GPU actors on GPU nodes): CLIP / CLAP batched across videos,
                       then HAN and events (parse) or the feature files (extract)   -> one record per video
    sinks    the driver writes records as complete shards + a _SUCCESS manifest (parse), or the
             extract log (extract)

Modules: :mod:`~lsld_engine.scale.cluster` (connect / start Ray), :mod:`~lsld_engine.scale.sources`,
:mod:`~lsld_engine.scale.stages`, :mod:`~lsld_engine.scale.sinks`, :mod:`~lsld_engine.scale.engine`
(the dataset and the driver loop); the ``--ray`` flags are in :mod:`lsld_engine.commands.common`, their
runs in ``lsld_engine.commands.scale``. Ray is the optional extra ``lsld-engine[ray]``; only the ``--ray``
path imports this package.
"""

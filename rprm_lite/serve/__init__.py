"""`rprm-lite serve`: the Scorer behind a local HTTP/JSON server, for desktop apps written in any language.

`settings` (the server's own options and the bind rule), `bodies` (request bodies to a Solution and a
ScoreConfig, through the CLI's own validation), `worker` (the one thread that owns the Scorer, and its
bounded queue), `events` (the NDJSON stream), `guard` (who may call: Host, Origin, key, content type, body),
`connections` (the connection cap and read deadlines uvicorn lacks), `app` (the FastAPI app) and `cli` (the
command). Only `guard`, `connections`, `app` and `cli`'s command body import FastAPI or uvicorn, which come with
the `serve` extra.
"""

"""`rprm-lite serve`: the Scorer behind a local HTTP/JSON server, for desktop apps written in any language.

`settings` (the server's own options and the bind rule), `requests` (request bodies to a Solution and a
ScoreConfig, through the CLI's own validation), `worker` (the one thread that owns the Scorer, and its
bounded queue), `events` (the NDJSON stream), `app` (the FastAPI app) and `cli` (the command). Only `app`
and `cli`'s command body import FastAPI and uvicorn, which come with the `serve` extra.
"""

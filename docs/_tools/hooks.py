"""MkDocs hooks (mkdocs.yml `hooks:`): the generated reference pages, and the offline check of the built site."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cli_reference  # noqa: E402
import http_reference  # noqa: E402
import offline  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402


def on_files(files: Files, config) -> Files:
    schema = http_reference.served_schema()
    generated = {"reference/cli.md": cli_reference.page(), "reference/http.md": http_reference.page(schema),
                 "reference/openapi.json": json.dumps(schema, indent=2) + "\n"}
    for src_uri, content in generated.items():
        files.append(File.generated(config, src_uri, content=content))
    return files


def on_post_build(config) -> None:
    remote = offline.remote_fetches(Path(config["site_dir"]))
    if remote:
        raise PluginError("the site would fetch from the network (it must work offline):\n" + "\n".join(remote))

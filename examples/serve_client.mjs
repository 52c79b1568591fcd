// A client of `rprm-lite serve` in plain JavaScript: `fetch` and a line splitter, nothing to install.
// Works in Node 18+ and, with --cors-origin set on the server, in a browser or an Electron renderer.
//
//   rprm-lite serve --port 8080
//   node examples/serve_client.mjs examples/solution.json [http://127.0.0.1:8080]
//
// Each line of the answer is one JSON event: "step" per scored step, then "result" (the same object as
// `rprm-lite score --json`) or "error". Aborting the fetch (controller.abort()) cancels the scoring.

import { readFile } from "node:fs/promises";

export async function* streamScore(url, solution, { apiKey, signal } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(`${url}/v1/score`, {
    method: "POST", headers, signal, body: JSON.stringify({ ...solution, stream: true }),
  });
  if (!response.ok) {
    const { error } = await response.json();
    throw new Error(`${response.status} ${error.type}: ${error.message}`);
  }
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of response.body) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  }
}

async function main() {
  const [file, url = "http://127.0.0.1:8080"] = process.argv.slice(2);
  const solution = JSON.parse(await readFile(file, "utf8"));
  for await (const event of streamScore(url, solution, { apiKey: process.env.RPRM_API_KEY })) {
    if (event.event === "step") {
      const score = event.score === null ? "-" : event.score.toFixed(3);
      console.log(`step ${event.index}: ${event.verdict.padEnd(11)} score ${score}`);
    } else if (event.event === "result") {
      const r = event.result;
      const where = r.first_error_step ? `first error at step ${r.first_error_step}` : "no error found";
      console.log(`solution ${r.id}: ${where}; solution score ${r.solution_score.toFixed(3)}`);
    } else {
      console.error(`error (${event.error.type}): ${event.error.message}`);
      process.exitCode = 1;
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error) => { console.error(`error: ${error.message}`); process.exitCode = 1; });
}

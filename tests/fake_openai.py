"""A tiny OpenAI-compatible server on 127.0.0.1 for tests: /v1/completions and /v1/models (plus vLLM's and
llama-server's adapter routes), scripted failures, an optional API key, every request recorded.

In a thread: `with FakeOpenAI(...) as fake: fake.base_url ...`. As a process (for `LocalServer` tests):
`python tests/fake_openai.py --host 127.0.0.1 --port P` (answers like the default FakeOpenAI, logs each request)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIGITS = {"0": -4.0, "1": -3.0, "2": -2.0, "3": -0.5, "4": -1.5, "5": -3.5}


class FakeOpenAI:
    """`failures`: what the first requests get instead of an answer, in order: an HTTP status (int) or "drop" (the
    connection closed without an answer). `logprobs`: "legacy" (llama-cpp-python/vLLM shape), "content" (mlx_lm's)
    or None (the server gives none). `models`: ids GET /v1/models lists."""

    def __init__(self, *, api_key: str | None = None, failures=(), logprobs: str | None = "legacy",
                 models=("fake-model",), delay_by_seed: bool = False, loras=(), accept_lora_loading: bool = True):
        self.api_key = api_key
        self.failures = list(failures)
        self.logprobs = logprobs
        self.models = list(models)
        self.delay_by_seed = delay_by_seed
        self.loras = list(loras)
        self.accept_lora_loading = accept_lora_loading
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ answers

    def completion(self, body: dict) -> dict:
        seed = body.get("seed") or 0
        if self.delay_by_seed:
            time.sleep(0.02 * (seed % 5))
        text = f"answer {seed} to {body['prompt'][-12:]!r}"
        choice = {"index": 0, "text": text, "finish_reason": "length" if body.get("max_tokens") == 1 else "stop"}
        if body.get("echo"):
            prompt = body["prompt"]
            choice["text"] = prompt + "x"
            choice["logprobs"] = {"tokens": list(prompt) + ["x"], "text_offset": list(range(len(prompt) + 1)),
                                  "token_logprobs": [None] + [-0.01 * i for i in range(1, len(prompt) + 1)]}
        elif body.get("logprobs") and self.logprobs == "legacy":
            choice["logprobs"] = {"tokens": ["3"], "text_offset": [0], "token_logprobs": [-0.5],
                                  "top_logprobs": [dict(DIGITS)]}
        elif body.get("logprobs") and self.logprobs == "content":
            alternatives = [{"token": t, "logprob": lp} for t, lp in DIGITS.items()]
            choice["logprobs"] = {"content": [{"token": "3", "logprob": -0.5, "top_logprobs": alternatives}]}
        return {"id": "cmpl-fake", "object": "text_completion", "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}

    def route(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        if method == "GET" and path == "/lora-adapters":
            return 200, self.loras
        if method == "POST" and path == "/v1/load_lora_adapter":
            if not self.accept_lora_loading:
                return 400, {"error": "runtime LoRA loading is disabled"}
            self.models.append(body["lora_name"])
            return 200, {"ok": True}
        if method == "POST" and path == "/v1/completions":
            if body.get("max_tokens") == 999:
                return 400, {"error": {"message": "max_tokens too large for this model"}}
            return 200, self.completion(body)
        return 404, {"error": "not found"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):  # the process form logs requests; the thread form stays quiet
                if fake.log_requests:
                    sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake._lock:
                    fake.requests.append({"method": method, "path": self.path, "body": body,
                                          "authorization": self.headers.get("Authorization")})
                    failure = fake.failures.pop(0) if fake.failures else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:  # counted while the answer is made, not while it is sent (the client may be on its next request)
                    answer = self._result(body, failure)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                self._send(answer)

            def _result(self, body, failure):
                """(status, payload), or None to drop the connection without an answer."""
                if failure == "drop":
                    return None
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return 401, {"error": "invalid api key"}
                if failure is not None:
                    return failure, {"error": f"scripted {failure}"}
                return fake.route(self.command, self.path, body)

            def _send(self, answer) -> None:
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        return Handler

    log_requests = False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    fake = FakeOpenAI()
    fake.log_requests = True
    fake.server.server_close()
    fake.server = ThreadingHTTPServer((args.host, args.port), fake._handler())
    print(f"fake server on {args.host}:{args.port}", file=sys.stderr, flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()

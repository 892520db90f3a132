"""``python -m pipeline.bench.tracing``: the CPU a request's tracing costs in the stages.

In one process, batches of ``--batch`` requests go through four no-op stages fused in memory (as
signals+safety+router+dispatch are), the last one's outputs carrying one endpoint attempt each;
CPU time (``time.process_time``: every thread of this process, the span exporter's included) per
request for: the stages' ``process`` alone (before tracing existed), the traceparent passed along
(no endpoint: the default), and a span per stage plus the attempt's, batch-exported over OTLP/HTTP
to a sink in another process that discards them (the flush at the end included).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import sys
import time

from pipeline.bus.fused import FusedStage
from pipeline.bus.stage import Inbound, Outbound, Output, Pending, Stage
from pipeline.envelope import Attempt, ChatRequest, Envelope, Outcome, RequestSection
from pipeline.settings import Settings
from pipeline.tracing import Tracing, new_traceparent, tracing_for

#: a pause between batches (no CPU), as between fetches: the exporter's thread keeps up, and no
#: span is dropped from its queue
PACE_S = 0.01
SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Hop(Stage):
    """Hands each request on unchanged."""

    topics = ("in",)

    def __init__(self, settings: Settings, name: str, outcome: Outcome | None = None) -> None:
        super().__init__(settings)
        self.name, self.outcome = name, outcome  # type: ignore[misc]

    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        outputs: list[Output | Pending] = [Outbound("in", None, i.message) for i in batch]
        if self.outcome is not None:
            outputs += [
                Outbound("outcomes", None, self.outcome.model_copy(update={"request_id": rid}))
                for rid in (i.message.request.request_id for i in batch)  # type: ignore[attr-defined]
            ]
        return outputs


def outcome() -> Outcome:
    attempt = Attempt(
        model="m",
        pool="p",
        endpoint="http://e:1",
        status="ok",
        started_at=time.time(),
        latency_ms=5,
    )
    return Outcome(
        request_id="r",
        decision="d",
        model="m",
        pool="p",
        endpoint="http://e:1",
        status="ok",
        attempts=1,
        latency_ms=5,
        prompt_tokens=10,
        completion_tokens=10,
        cost_usd=0.0,
        dispatched_at=time.time(),
        completed_at=time.time(),
        attempt_log=[attempt],
    )


async def cpu_ms_per_request(run, batches: list[list[Inbound]]) -> float:
    started = time.process_time()
    for batch in batches:
        await run(batch)
        time.sleep(PACE_S)
    return (time.process_time() - started) * 1000 / sum(len(b) for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        endpoint = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
        settings = Settings()
        names = ("signals", "safety", "router", "dispatch")
        parts = [Hop(settings, n, outcome() if n == "dispatch" else None) for n in names]
        fused = FusedStage(settings, parts)
        envelopes = [
            Envelope(
                request=RequestSection(
                    body=ChatRequest(messages=[{"role": "user", "content": "hi"}])
                )
            )
            for _ in range(args.batch)
        ]
        batches = [
            [Inbound("in", 0, 0, b"", e, traceparent=new_traceparent()) for e in envelopes]
            for _ in range(args.requests // args.batch)
        ]
        otlp = tracing_for(settings.model_copy(update={"otlp_endpoint": endpoint}), "bench")

        async def measure() -> dict[str, float]:
            async def untraced(batch: list[Inbound]) -> None:
                items = batch
                for part in parts:
                    items = [
                        Inbound("in", 0, 0, b"", o.message)
                        for o in await part.process(items)
                        if o.topic == "in"
                    ]  # type: ignore[union-attr]

            await cpu_ms_per_request(untraced, batches[:20])  # warm up
            results = {"process alone": await cpu_ms_per_request(untraced, batches)}
            passing = Tracing()
            results["traceparent passed along"] = await cpu_ms_per_request(
                lambda b: fused.process_traced(b, passing), batches
            )
            started = time.process_time()  # the spans, and their export to the last
            for batch in batches:
                await fused.process_traced(batch, otlp)
                time.sleep(PACE_S)
            otlp.shutdown()
            spent = (time.process_time() - started) * 1000 / (len(batches) * args.batch)
            results["spans exported (OTLP/HTTP)"] = spent
            return results

        results = asyncio.run(measure())
    finally:
        sink.terminate()
    print(
        f"setup: {args.requests} requests in batches of {args.batch}, 4 fused no-op stages, "
        f"1 attempt each; python {platform.python_version()} on {platform.machine()}"
    )
    base = results["process alone"]
    for what, ms in results.items():
        print(f"  {what:28s} {ms * 1000:8.1f} CPU-us/request  (+{(ms - base) * 1000:.1f})")


if __name__ == "__main__":
    main()

"""Evaluate the support triage example's classifier on labelled tickets.

Run from the repository root::

    python -m evals.triage             # the embedded model, offline
    python -m evals.triage --endpoint  # the configured endpoint's embeddings instead
    python -m evals.triage -v          # and every ticket with its scores

Two sets, both written by hand for this eval (see docs/agents.md): ``triage_tickets.jsonl``
(50 tickets, consulted while the label phrases were written) and ``triage_holdout.jsonl``
(25 tickets written before any tuning, to keep the figure honest). Tickets marked
``ambiguous`` could fairly go to two categories; the label is the one a person would pick.
Prints accuracy per set, the misses, and per-ticket latency (classification and reply).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from examples.support_triage import CATEGORIES, Ticket, template_reply
from nerve.llm.classify import Classifier, Embedder, LocalEmbedder, default_embedder
from nerve.llm.embedded import load_model

HERE = Path(__file__).resolve().parent
SETS = ("triage_tickets.jsonl", "triage_holdout.jsonl")


@dataclass(frozen=True)
class Labelled:
    id: int
    body: str
    category: str
    ambiguous: bool


def read_set(name: str) -> list[Labelled]:
    rows = [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]
    return [
        Labelled(row["id"], row["body"], row["category"], bool(row.get("ambiguous")))
        for row in rows
    ]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def evaluate(embedder: Embedder, verbose: bool) -> int:
    classifier = Classifier(CATEGORIES, embedder=embedder)
    started = time.perf_counter()
    await classifier.classify("warm-up: embeds the label phrases")
    print(f"label phrases embedded in {(time.perf_counter() - started) * 1000:.0f} ms")
    latencies: list[float] = []
    right_total = total = 0
    for name in SETS:
        tickets = read_set(name)
        right = 0
        misses: list[str] = []
        for ticket in tickets:
            started = time.perf_counter()
            result = await classifier.classify(ticket.body)
            template_reply(Ticket(id=ticket.id, body=ticket.body), result.label)
            latencies.append(time.perf_counter() - started)
            ok = result.label == ticket.category
            right += ok
            flag = " (ambiguous)" if ticket.ambiguous else ""
            if not ok:
                misses.append(f"  #{ticket.id} {ticket.category} -> {result.label}{flag}")
            if verbose:
                best = ", ".join(f"{k} {v:.2f}" for k, v in list(result.scores.items())[:3])
                mark = "ok  " if ok else "MISS"
                print(f"{mark} #{ticket.id:<3} {ticket.category:<15} {best}  {ticket.body[:60]}")
        print(f"{name}: {right}/{len(tickets)} = {right / len(tickets):.0%}")
        print("\n".join(misses))
        right_total += right
        total += len(tickets)
    ms = [latency * 1000 for latency in latencies]
    print(f"all: {right_total}/{total} = {right_total / total:.0%}")
    print(
        f"per ticket: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
        f"mean {statistics.fmean(ms):.1f} ms ({len(ms)} tickets, one at a time)"
    )
    return right_total * 100 // total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--endpoint", action="store_true", help="use the endpoint's embeddings")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every ticket")
    args = parser.parse_args(argv)
    embedder: Embedder
    if args.endpoint:
        embedder = default_embedder()
        print(f"embedder: {type(embedder).__name__}")
    else:
        started = time.perf_counter()
        model = load_model()
        load = time.perf_counter() - started
        embedder = LocalEmbedder(model)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"embedded model loaded in {load * 1000:.0f} ms (numpy and tokenizers imported)")
        print(f"peak RSS after loading: {rss:.0f} MB")
    asyncio.run(evaluate(embedder, args.verbose))
    if not args.endpoint:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS at the end: {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

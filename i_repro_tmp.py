import asyncio
from bench import budget_overhead, generation_at_llm_latency as g
from bench.harness import Profile
orig = g.wrk
async def wrk(*a, **k):
    r = await orig(*a, **k); print(a[1]["draftJobId"][:4], k.get("connections"), r); return r
budget_overhead.wrk = wrk
p = Profile(True, 1, 3000, 2.0, 1.0, 5.0, 1000)
print(asyncio.run(budget_overhead.run(p)).details)

import { createCache } from '../dist/src/index.js'
const spin = Number(process.argv[2]); const shards = Number(process.argv[3] ?? 2)
const cache = await createCache({ shards, idleSpinMicros: spin })
const v = 'x'.repeat(220)
const keys = Array.from({ length: 10000 }, (_, i) => 'key:' + i)
await cache.mset(keys.map(k => [k, v]))
for (let i = 0; i < 3000; i++) await cache.get(keys[i % 10000])
const h = []
for (let i = 0; i < 10000; i++) { const t = process.hrtime.bigint(); await cache.get(keys[i]); h.push(Number(process.hrtime.bigint() - t)) }
h.sort((a, b) => a - b)
let n = 0; const t = performance.now()
while (performance.now() - t < 1500) { const ps = []; for (let i = 0; i < 2048; i++) ps.push(cache.get(keys[(n + i * 7) % 10000])); await Promise.all(ps); n += 2048 }
console.log(`spin ${spin} shards ${shards}: one-in-flight p50 ${(h[5000] / 1000).toFixed(1)}us p99 ${(h[9900] / 1000).toFixed(1)}us; batched ${Math.round(n / (performance.now() - t) * 1000)}/s`)
await cache.close()

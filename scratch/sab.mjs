import { Worker } from 'node:worker_threads'
const sab = new SharedArrayBuffer(16); const st = new Int32Array(sab)
const code = `const { workerData } = require('node:worker_threads'); const st = new Int32Array(workerData);
for (;;) { Atomics.wait(st, 0, 0); if (Atomics.load(st,0) === 1) { Atomics.store(st, 0, 0); Atomics.store(st, 1, 1); Atomics.notify(st, 1) } }`
const w = new Worker(code, { eval: true, workerData: sab })
async function rt() {
  Atomics.store(st, 1, 0); Atomics.store(st, 0, 1); Atomics.notify(st, 0)
  const r = Atomics.waitAsync(st, 1, 0); if (r.async) await r.value
}
for (let i = 0; i < 2000; i++) await rt()
const h = []
for (let i = 0; i < 10000; i++) { const t = process.hrtime.bigint(); await rt(); h.push(Number(process.hrtime.bigint() - t)) }
h.sort((a, b) => a - b); console.log('sab waitAsync p50 us', (h[5000] / 1000).toFixed(1), 'p99', (h[9900] / 1000).toFixed(1))
w.terminate()

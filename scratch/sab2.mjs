import { Worker } from 'node:worker_threads'
const sab = new SharedArrayBuffer(16); const st = new Int32Array(sab)
const code = `const { workerData } = require('node:worker_threads'); const st = new Int32Array(workerData);
for (;;) { let spins = 0; while (Atomics.load(st,0) === 0 && spins++ < 20000) {} ; if (Atomics.load(st,0)===0) Atomics.wait(st, 0, 0); if (Atomics.load(st,0) === 1) { Atomics.store(st, 0, 0); Atomics.store(st, 1, 1); Atomics.notify(st, 1) } }`
const w = new Worker(code, { eval: true, workerData: sab })
const mode = process.argv[2]
async function rt() {
  Atomics.store(st, 1, 0); Atomics.store(st, 0, 1); Atomics.notify(st, 0)
  if (mode === 'spin') { let s = 0; while (Atomics.load(st, 1) === 0 && s++ < 100000) {} if (Atomics.load(st,1) === 1) return }
  const r = Atomics.waitAsync(st, 1, 0); if (r.async) await r.value
}
for (let i = 0; i < 2000; i++) await rt()
const h = []
for (let i = 0; i < 10000; i++) { const t = process.hrtime.bigint(); await rt(); h.push(Number(process.hrtime.bigint() - t)) }
h.sort((a, b) => a - b); console.log(mode, 'p50 us', (h[5000] / 1000).toFixed(1), 'p99', (h[9900] / 1000).toFixed(1))
w.terminate()

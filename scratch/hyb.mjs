import { Worker } from 'node:worker_threads'
const sab = new SharedArrayBuffer(16); const st = new Int32Array(sab)
const code = `const { parentPort, workerData } = require('node:worker_threads'); const st = new Int32Array(workerData); let seen = 0
parentPort.on('message', (m) => { seen++; const o = new Uint8Array(20); parentPort.postMessage(o, [o.buffer]); const t = process.hrtime.bigint(); while (Atomics.load(st, 0) === seen && Number(process.hrtime.bigint() - t) < ${process.argv[2] ?? 50000}) {} })`
const w = new Worker(code, { eval: true, workerData: sab })
async function rt() { return new Promise((res) => { w.once('message', res); const b = new Uint8Array(30); Atomics.add(st, 0, 1); w.postMessage(b, [b.buffer]) }) }
for (let i = 0; i < 2000; i++) await rt()
const h = []
for (let i = 0; i < 10000; i++) { const t = process.hrtime.bigint(); await rt(); h.push(Number(process.hrtime.bigint() - t)) }
h.sort((a, b) => a - b); console.log('hybrid spin', process.argv[2], 'p50 us', (h[5000] / 1000).toFixed(1), 'p99', (h[9900] / 1000).toFixed(1))
w.terminate()

import { Worker } from 'node:worker_threads'
const code = `const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => { const o = new Uint8Array(20); parentPort.postMessage(o, [o.buffer]) })`
const w = new Worker(code, { eval: true })
const toggle = process.argv[2] === 'toggle'
async function rt() { return new Promise((res) => { w.once('message', res); if (toggle) w.ref(); const b = new Uint8Array(30); w.postMessage(b, [b.buffer]) }).then(v => { if (toggle) w.unref(); return v }) }
for (let i = 0; i < 2000; i++) await rt()
const h = []
for (let i = 0; i < 10000; i++) { const t = process.hrtime.bigint(); await rt(); h.push(Number(process.hrtime.bigint() - t)) }
h.sort((a, b) => a - b); console.log(process.argv[2] ?? 'plain', 'p50 us', (h[5000] / 1000).toFixed(1), 'p99', (h[9900] / 1000).toFixed(1))
w.terminate()

// close(): in-flight operations finish, later ones reject, and nothing keeps the process alive.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createCache, ClosedError } from '../../src/index.js'

const child = fileURLToPath(new URL('../fixtures/lifecycle_child.js', import.meta.url))

function runChild(mode: string): Promise<{ code: number; stdout: string; ms: number }> {
  const start = Date.now()
  return new Promise((resolve) => {
    // If a handle kept the child alive, the timeout kills it and the test fails on the exit code.
    execFile(process.execPath, [child, mode], { timeout: 10_000 }, (err, stdout) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, ms: Date.now() - start })
    })
  })
}

test('operations in flight when close() is called finish; later ones reject with E_CLOSED', async () => {
  const cache = await createCache({ shards: 2 })
  const sets = Array.from({ length: 1000 }, (_, i) => cache.set(`k${i}`, i))
  const get = cache.get('k0')
  const closing = cache.close()
  const late = cache.get('k1').then(
    () => 'resolved',
    (err: unknown) => err,
  )
  assert.equal(await Promise.all(sets), sets.map(() => true))
  assert.is(await get, 0)
  await closing
  assert.instance(await late, ClosedError)
})

test('a process that closes its cache exits by itself', async () => {
  const r = await runChild('close')
  assert.is(r.code, 0)
  assert.is(r.stdout.trim(), 'closed')
})

test('a process that never closes exits once its pending operations resolve', async () => {
  const r = await runChild('no-close')
  assert.is(r.code, 0)
  assert.is(r.stdout.trim(), 'got 1')
})

test.run()

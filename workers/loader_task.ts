/**
 * The entry of getOrCompute's loader pool (a piscina pool, src/api/create.ts):
 * runs the named export of the user's loader module with the call's args.
 * The module is imported once per pool thread.
 */
interface LoaderTask {
  /** file:// URL of the user's loader module. */
  filename: string
  name: string
  args: unknown[]
}

const modules = new Map<string, Promise<Record<string, unknown>>>()

export default async function runLoader(task: LoaderTask): Promise<unknown> {
  let mod = modules.get(task.filename)
  if (mod === undefined) {
    mod = import(task.filename) as Promise<Record<string, unknown>>
    modules.set(task.filename, mod)
  }
  const fn = (await mod)[task.name]
  if (typeof fn !== 'function') {
    throw new TypeError(`loaders.pool.filename has no exported function named ${JSON.stringify(task.name)}`)
  }
  return (fn as (...args: unknown[]) => unknown)(...task.args)
}

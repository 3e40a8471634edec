/**
 * `shardcache replay --chart out.svg`: hit ratio against cache size, one
 * line per policy (and per shard count, and for the byte hit ratio with
 * `--bytes`), with axes, tick labels, a title and a legend. Hand-written SVG:
 * a chart of a few lines needs no plotting library, and the file opens in any
 * browser.
 */
import { formatBytes } from './replay.js'
import type { ReplayReport, ReplayResult } from './replay.js'

const W = 760
const H = 440
const LEFT = 64
const RIGHT = 220
const TOP = 48
const BOTTOM = 56
const PLOT_W = W - LEFT - RIGHT
const PLOT_H = H - TOP - BOTTOM
/** One colour per policy, in EVICTION_POLICIES order (a colour-blind-safe set). */
const COLOURS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000', '#f0e442']
/** One dash pattern per shard count after the first; the byte hit ratio is dotted. */
const DASHES = ['', '8 4', '3 3 8 3', '12 3 3 3']
const BYTE_DASH = '2 3'

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** A count in few characters: 950, 4.9k, 1.2M. */
function short(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toPrecision(3)}M`
  if (n >= 1e3) return `${+(n / 1e3).toPrecision(3)}k`
  return String(n)
}

interface Series {
  label: string
  colour: string
  dash: string
  points: { x: number; y: number }[]
}

/** The chart of `report` (every result; at least one). */
export function replayChart(report: ReplayReport): string {
  const rs = report.results
  const byBytes = rs[0]!.bytes
  const policies = [...new Set(rs.map((r) => r.policy))]
  const shardCounts = [...new Set(rs.map((r) => r.shards))]
  const series: Series[] = []
  const add = (label: string, colour: string, dash: string, of: ReplayResult[], y: (r: ReplayResult) => number): void => {
    series.push({ label, colour, dash, points: of.map((r) => ({ x: r.size, y: y(r) * 100 })).sort((a, b) => a.x - b.x) })
  }
  policies.forEach((policy, pi) => {
    const colour = COLOURS[pi % COLOURS.length]!
    shardCounts.forEach((shards, si) => {
      const of = rs.filter((r) => r.policy === policy && r.shards === shards)
      const name = shardCounts.length > 1 ? `${policy}, ${shards} shard${shards === 1 ? '' : 's'}` : policy
      add(byBytes ? `${name}, objects` : name, colour, DASHES[si % DASHES.length]!, of, (r) => r.hitRatio)
      if (byBytes) add(`${name}, bytes`, colour, BYTE_DASH, of, (r) => r.byteHitRatio!)
    })
  })

  const sizes = [...new Set(rs.map((r) => r.size))].sort((a, b) => a - b)
  const lo = sizes[0]!
  const hi = sizes[sizes.length - 1]!
  // Sizes an order of magnitude apart or more read better on a log axis (1%, 5%, 10%, 50% would bunch up at the left).
  const log = hi / lo >= 10
  const x = (v: number): number => {
    if (lo === hi) return LEFT + PLOT_W / 2
    const f = log ? Math.log(v / lo) / Math.log(hi / lo) : v / hi
    return LEFT + f * PLOT_W
  }
  const maxY = Math.max(...series.flatMap((s) => s.points.map((p) => p.y)))
  const top = Math.max(10, Math.ceil(maxY / 10) * 10)
  const y = (v: number): number => TOP + PLOT_H - (v / top) * PLOT_H
  const px = (n: number): string => n.toFixed(1)

  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  parts.push(`<title>hit ratio vs cache size: ${escapeXml(report.trace)}</title>`)
  parts.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  parts.push(`<text x="${LEFT}" y="24" font-size="15" font-weight="bold">${escapeXml(`hit ratio vs cache size: ${report.trace}`)}</text>`)
  // Horizontal grid and y ticks: five steps up to the top.
  for (let i = 0; i <= 5; i++) {
    const v = (top * i) / 5
    parts.push(`<line x1="${LEFT}" x2="${LEFT + PLOT_W}" y1="${px(y(v))}" y2="${px(y(v))}" stroke="#e0e0e0"/>`)
    parts.push(`<text x="${LEFT - 8}" y="${px(y(v) + 4)}" text-anchor="end">${+v.toFixed(1)}</text>`)
  }
  // x ticks at the sizes replayed, labelled as asked (10%) and as the budget.
  const asked = new Map(rs.map((r) => [r.size, r.sizeAsked]))
  for (const s of sizes) {
    const label = byBytes ? formatBytes(s) : short(s)
    const a = asked.get(s)!
    parts.push(`<line x1="${px(x(s))}" x2="${px(x(s))}" y1="${TOP + PLOT_H}" y2="${TOP + PLOT_H + 5}" stroke="#333333"/>`)
    parts.push(`<text x="${px(x(s))}" y="${TOP + PLOT_H + 18}" text-anchor="middle">${escapeXml(a.endsWith('%') ? `${a} (${label})` : label)}</text>`)
  }
  parts.push(`<line x1="${LEFT}" x2="${LEFT}" y1="${TOP}" y2="${TOP + PLOT_H}" stroke="#333333"/>`)
  parts.push(`<line x1="${LEFT}" x2="${LEFT + PLOT_W}" y1="${TOP + PLOT_H}" y2="${TOP + PLOT_H}" stroke="#333333"/>`)
  const xTitle = `cache size (${byBytes ? 'bytes' : 'entries'}${log ? ', log scale' : ''})`
  parts.push(`<text x="${LEFT + PLOT_W / 2}" y="${H - 12}" text-anchor="middle">${xTitle}</text>`)
  parts.push(`<text transform="translate(18 ${TOP + PLOT_H / 2}) rotate(-90)" text-anchor="middle">hit ratio (%)</text>`)
  // The series: a path each, a dot on every point (a single size is a dot alone).
  for (const s of series) {
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(x(p.x))} ${px(y(p.y))}`).join(' ')
    const dash = s.dash === '' ? '' : ` stroke-dasharray="${s.dash}"`
    parts.push(`<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="2"${dash}><title>${escapeXml(s.label)}</title></path>`)
    for (const p of s.points) parts.push(`<circle cx="${px(x(p.x))}" cy="${px(y(p.y))}" r="3" fill="${s.colour}"/>`)
  }
  // The legend, right of the plot.
  series.forEach((s, i) => {
    const ly = TOP + 8 + i * 18
    const lx = LEFT + PLOT_W + 16
    const dash = s.dash === '' ? '' : ` stroke-dasharray="${s.dash}"`
    parts.push(`<line x1="${lx}" x2="${lx + 28}" y1="${ly}" y2="${ly}" stroke="${s.colour}" stroke-width="2"${dash}/>`)
    parts.push(`<text x="${lx + 36}" y="${ly + 4}">${escapeXml(s.label)}</text>`)
  })
  parts.push('</svg>\n')
  return parts.join('\n')
}

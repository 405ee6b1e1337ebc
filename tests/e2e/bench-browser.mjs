// Browser benchmarks of the client (run by hand; figures go to BENCHMARKS.md):
//
//   node tests/e2e/bench-browser.mjs [trace-name] [runs]     (default automerge-paper, 3)
//
// 1. Download size: gzip -9 of the wasm + JS glue of tandem-client (client-wasm/pkg, built
//    by scripts/build-client) against ywasm from npm (tests/e2e/node_modules).
// 2. In Debian's Chromium, on one page: replaying a real editing trace through
//    tandem-client's Text and through yjs' Y.Text (one transaction per trace transaction),
//    and applying the trace's per-transaction updates (what a peer receives) in both.
//    Every run checks the final text against the trace's endContent. Median of `runs`.
import { createServer } from 'node:http'
import { readFileSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { gzipSync, gunzipSync } from 'node:zlib'
import { join, extname } from 'node:path'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import { chromium } from 'playwright-core'

const ROOT = new URL('../../', import.meta.url).pathname
const TRACES = process.env.TANDEM_TRACES ?? join(ROOT, '..', 'shared', 'traces')
const traceName = process.argv[2] ?? 'automerge-paper'
const runs = Number(process.argv[3] ?? 3)
const pkg = join(ROOT, 'client-wasm', 'pkg')
const ywasm = join(ROOT, 'tests', 'e2e', 'node_modules', 'ywasm')
if (!existsSync(join(pkg, 'tandem_client_bg.wasm'))) throw new Error('run scripts/build-client first')

// 1. Sizes.
const gz = (file) => gzipSync(readFileSync(file), { level: 9 }).length
const raw = (file) => readFileSync(file).length
const sizes = {
  tandem: { wasm: raw(join(pkg, 'tandem_client_bg.wasm')), wasmGz: gz(join(pkg, 'tandem_client_bg.wasm')), jsGz: gz(join(pkg, 'tandem_client.js')) },
  ywasm: { wasm: raw(join(ywasm, 'ywasm_bg.wasm')), wasmGz: gz(join(ywasm, 'ywasm_bg.wasm')), jsGz: gz(join(ywasm, 'ywasm.js')) }
}
const version = (dir) => JSON.parse(readFileSync(join(dir, 'package.json'))).version
console.log('| client | wasm bytes | wasm gzip | JS glue gzip | total gzip |')
console.log('|---|--:|--:|--:|--:|')
for (const [name, s] of Object.entries(sizes)) {
  const label = name === 'ywasm' ? `ywasm ${version(ywasm)} (npm)` : 'tandem-client (client-wasm/pkg)'
  console.log(`| ${label} | ${s.wasm.toLocaleString('en')} | ${s.wasmGz.toLocaleString('en')} | ${s.jsGz.toLocaleString('en')} | ${(s.wasmGz + s.jsGz).toLocaleString('en')} |`)
}

// 2. Timing in the browser. yjs is bundled for the page with the esbuild of client-wasm.
const work = mkdtempSync(join(tmpdir(), 'tandem-bench-'))
const entry = join(work, 'entry.js')
const yjsModule = join(ROOT, 'tests', 'e2e', 'node_modules', 'yjs', 'dist', 'yjs.mjs')
writeFileSync(entry, `export * as Y from ${JSON.stringify(yjsModule)}\n`)
execFileSync(join(ROOT, 'client-wasm', 'node_modules', '.bin', 'esbuild'), [entry, '--bundle', '--format=esm', `--outfile=${join(work, 'yjs.js')}`, '--log-level=warning'])
const trace = gunzipSync(readFileSync(join(TRACES, 'sequential', `${traceName}.json.gz`)))
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.html': 'text/html' }
const server = createServer((req, res) => {
  const url = req.url.split('?')[0]
  const file = url === '/' ? null : url === '/trace.json' ? 'trace' : url === '/yjs.js' ? join(work, 'yjs.js') : url.startsWith('/pkg/') ? join(pkg, url.slice(5)) : null
  if (url === '/') { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><title>bench</title>'); return }
  if (!file || (file !== 'trace' && !existsSync(file))) { res.writeHead(404); res.end(); return }
  res.writeHead(200, { 'content-type': types[extname(file === 'trace' ? 'x.json' : file)] ?? 'application/octet-stream' })
  res.end(file === 'trace' ? trace : readFileSync(file))
}).listen(0, '127.0.0.1')
await new Promise((resolve) => server.once('listening', resolve))
const base = `http://127.0.0.1:${server.address().port}`

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
})
const page = await browser.newPage()
await page.goto(base + '/')
const version_ = await browser.version()
const results = await page.evaluate(async (runs) => {
  const { default: init, Doc } = await import('/pkg/tandem_client.js')
  await init()
  const { Y } = await import('/yjs.js')
  const trace = await (await fetch('/trace.json')).json()
  const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const time = (f) => { const t0 = performance.now(); f(); return performance.now() - t0 }

  const tandemReplay = () => {
    const doc = new Doc('bench')
    const text = doc.getText('content')
    const ms = time(() => {
      for (const { patches } of trace.txns) {
        if (patches.length === 1) { const [pos, del, ins] = patches[0]; text.replace(pos, del, ins) } else {
          for (const [pos, del, ins] of patches) text.replace(pos, del, ins)
        }
      }
    })
    if (text.toString() !== trace.endContent) throw new Error('tandem replay diverged')
    return ms
  }
  const yjsReplay = (collect) => {
    const doc = new Y.Doc()
    const text = doc.getText('content')
    const updates = []
    if (collect) doc.on('update', (u) => updates.push(u))
    const ms = time(() => {
      for (const { patches } of trace.txns) {
        doc.transact(() => {
          for (const [pos, del, ins] of patches) {
            if (del) text.delete(pos, del)
            if (ins) text.insert(pos, ins)
          }
        })
      }
    })
    if (text.toString() !== trace.endContent) throw new Error('yjs replay diverged')
    return { ms, updates }
  }
  const { updates } = yjsReplay(true)
  const tandemApply = () => {
    const doc = new Doc('peer')
    const ms = time(() => { for (const u of updates) doc.applyUpdate(u) })
    if (doc.getText('content').toString() !== trace.endContent) throw new Error('tandem apply diverged')
    return ms
  }
  const yjsApply = () => {
    const doc = new Y.Doc()
    const ms = time(() => { for (const u of updates) Y.applyUpdate(doc, u) })
    if (doc.getText('content').toString() !== trace.endContent) throw new Error('yjs apply diverged')
    return ms
  }
  const out = { replay: { tandem: [], yjs: [] }, apply: { tandem: [], yjs: [] }, txns: trace.txns.length }
  for (let i = 0; i < runs; i++) {
    // Alternate, so drift of the shared machine hits both alike.
    out.replay.yjs.push(yjsReplay(false).ms)
    out.replay.tandem.push(tandemReplay())
    out.apply.yjs.push(yjsApply())
    out.apply.tandem.push(tandemApply())
  }
  for (const k of ['replay', 'apply']) for (const who of ['tandem', 'yjs']) out[k][who] = median(out[k][who])
  return out
}, runs)
await browser.close()
server.close()
console.log(`\n${traceName}: ${results.txns.toLocaleString('en')} transactions, ${version_}, median of ${runs}`)
console.log('| work | tandem-client | yjs | tandem / yjs |')
console.log('|---|--:|--:|--:|')
for (const [k, label] of [['replay', 'replay the edits (local typing)'], ['apply', 'apply the per-transaction updates (a peer receiving them)']]) {
  const { tandem, yjs } = results[k]
  console.log(`| ${label} | ${tandem.toFixed(0)} ms | ${yjs.toFixed(0)} ms | ${(tandem / yjs).toFixed(2)} |`)
}

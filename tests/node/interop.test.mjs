// Interop with the real npm packages: stock `yjs` + `y-websocket` clients and Rust clients
// (tests/src/bin/yclient.rs, built on the engine) edit one document on tandem-server.
// Run by scripts/test after `cargo build -p tandem-server -p tandem-tests`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import * as Y14 from '@y/y'
import { WebsocketProvider as WebsocketProvider4 } from '@y/websocket'
import WebSocket from 'ws'

const ROOT = new URL('../../', import.meta.url).pathname
const SERVER = process.env.TANDEM_SERVER_BIN ?? `${ROOT}target/debug/tandem-server`
const YCLIENT = process.env.TANDEM_YCLIENT_BIN ?? `${ROOT}target/debug/yclient`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (cond, what, ms = 20000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

async function freePort () {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

async function startServer (t) {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'tandem-interop-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const proc = spawn(SERVER, ['--listen', `127.0.0.1:${port}`, '--database-url', `sqlite://${dir}/tandem.db`], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } })
  t.after(() => proc.kill('SIGKILL'))
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return `ws://127.0.0.1:${port}/ws`
    await sleep(20)
  }
  throw new Error('server did not start')
}

function jsClient (t, url, room) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket })
  t.after(() => { provider.destroy(); doc.destroy() })
  return { doc, provider, text: doc.getText('content') }
}

function run (cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d) => { out += d })
    // 'close', not 'exit': 'exit' may fire before the child's stdout has been read to its
    // end, which left `out` empty in one CI run.
    p.on('close', (code) => code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}`)))
  })
}

const tokens = (s) => s.match(/<[^>]+>/g) ?? []

test('yjs + y-websocket clients and Rust clients editing concurrently converge', async (t) => {
  const url = await startServer(t)
  const room = 'interop-doc'
  const js = [0, 1, 2].map(() => jsClient(t, url, room))
  await waitFor(() => js.every((c) => c.provider.synced), 'js clients synced')
  const PER = 20
  const total = PER * 5
  const rust = ['r0', 'r1'].map((p) => run(YCLIENT, [`${url}/${room}`, p, String(PER), String(total)]))
  for (let i = 0; i < PER; i++) {
    js.forEach((c, j) => {
      const tok = `<j${j}.${i}>`
      if (i % 2 === 0) c.text.insert(0, tok)
      else c.text.insert(c.text.length, tok)
    })
    await sleep(3)
  }
  const rustOut = await Promise.all(rust)
  await waitFor(() => js.every((c) => tokens(c.text.toString()).length === total), 'all tokens at every js client')
  const reference = js[0].text.toString()
  for (const c of js) assert.equal(c.text.toString(), reference)
  const seen = tokens(reference)
  assert.equal(new Set(seen).size, total, 'every insert exactly once')
  for (const out of rustOut) assert.equal(JSON.parse(out).text, reference, 'rust clients converge too')
})

test("a killed client's cursor disappears for the others", async (t) => {
  const url = await startServer(t)
  const room = 'cursor-doc'
  const watcher = jsClient(t, url, room)
  await waitFor(() => watcher.provider.synced, 'watcher synced')
  watcher.text.insert(0, 'hello world')
  const child = spawn(process.execPath, [new URL('./cursor-child.mjs', import.meta.url).pathname, url, room], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => child.kill('SIGKILL'))
  const id = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(Number(String(d).trim()))))
  await waitFor(() => watcher.provider.awareness.getStates().get(id)?.cursor, 'remote cursor visible')
  const cursor = watcher.provider.awareness.getStates().get(id).cursor
  const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(cursor.head), watcher.doc)
  assert.equal(abs.index, 3, 'the caret resolves to the offset it was placed at')
  child.kill('SIGKILL')
  await waitFor(() => !watcher.provider.awareness.getStates().has(id), 'cursor removed after kill', 20000)
})

test('y-websocket 4.x clients (@y/websocket with @y/y 14) sync, see each other and share a document with 3.x', async (t) => {
  const url = await startServer(t)
  const room = 'v4-doc'
  const four = [0, 1].map(() => {
    const doc = new Y14.Doc()
    const provider = new WebsocketProvider4(url, room, doc, { WebSocketPolyfill: WebSocket })
    t.after(() => { provider.destroy(); doc.destroy() })
    return { doc, provider, text: doc.get('content') }
  })
  await waitFor(() => four.every((c) => c.provider.synced), '4.x clients synced')
  four[0].provider.awareness.setLocalStateField('user', { name: 'four' })
  four[0].text.insert(0, 'from four')
  await waitFor(() => four[1].text.toString() === 'from four', 'update reaches the other 4.x client')
  await waitFor(() => four[1].provider.awareness.getStates().get(four[0].doc.clientID)?.user?.name === 'four', 'presence reaches it')
  // A late 4.x joiner gets the whole document from the server.
  const doc = new Y14.Doc()
  const late = new WebsocketProvider4(url, room, doc, { WebSocketPolyfill: WebSocket })
  t.after(() => { late.destroy(); doc.destroy() })
  await waitFor(() => doc.get('content').toString() === 'from four', 'late 4.x joiner synced')
  // 3.x and 4.x clients share one document.
  const three = jsClient(t, url, room)
  await waitFor(() => three.text.toString() === 'from four', '3.x client sees the 4.x text')
  three.text.insert(0, 'and three, ')
  await waitFor(() => four.every((c) => c.text.toString() === 'and three, from four'), '4.x clients see the 3.x edit')
})

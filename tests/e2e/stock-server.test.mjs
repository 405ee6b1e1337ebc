// The browser client against a stock Yjs server: tandem-client (wasm, in Chromium) and a
// `yjs` + `y-websocket` client share a document on `@y/websocket-server` from npm, with
// presence both ways. Nothing of Tandem runs on the server side of this test (tandem-server
// only serves the client's files).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startServer, launch, freePort, waitForPort, until, sleep } from './support.mjs'

async function stockServer (t) {
  const port = await freePort()
  const dir = new URL('./node_modules/@y/websocket-server/src/server.js', import.meta.url).pathname
  const proc = spawn('node', [dir], { env: { ...process.env, HOST: '127.0.0.1', PORT: String(port) }, stdio: 'ignore' })
  t.after(() => proc.kill('SIGKILL'))
  await waitForPort(port)
  return `ws://127.0.0.1:${port}`
}

test('the wasm client syncs with a yjs client through @y/websocket-server', async (t) => {
  const stock = await stockServer(t)
  const files = await startServer(t)
  const browser = await launch(t)
  const page = await (await browser.newContext()).newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(String(e)))
  await page.goto(`${files.url}/api/docs`)
  await page.evaluate(async (url) => {
    const { default: init, Doc, Awareness, Provider } = await import('/pkg/tandem_client.js')
    await init()
    const doc = new Doc('room')
    const awareness = new Awareness(doc)
    awareness.setLocalState({ user: { name: 'wasm', color: '#30bced' } })
    // A stock server sends no "saved" acknowledgements.
    const provider = new Provider(url, 'interop-room', doc, awareness, {
      transports: ['websocket'], saveAcks: false, persistence: false, broadcast: false
    })
    window.t = { doc, text: doc.getText('content'), awareness, provider }
  }, stock)
  await until(page, () => window.t.provider.synced, null, 'wasm client synced with the stock server')

  const ydoc = new Y.Doc()
  const yprovider = new WebsocketProvider(stock, 'interop-room', ydoc, { WebSocketPolyfill: WebSocket })
  t.after(() => { yprovider.destroy(); ydoc.destroy() })
  yprovider.awareness.setLocalStateField('user', { name: 'yjs', color: '#ee6352' })
  await new Promise((resolve) => yprovider.once('sync', resolve))
  const ytext = ydoc.getText('content')

  await page.evaluate(() => window.t.text.insert(0, 'from wasm.'))
  for (let i = 0; i < 200 && ytext.toString() !== 'from wasm.'; i++) await sleep(20)
  assert.equal(ytext.toString(), 'from wasm.')
  ytext.insert(0, 'from yjs. ')
  await until(page, () => window.t.text.toString() === 'from yjs. from wasm.', null, 'yjs edit reaches wasm')
  // Concurrent edits on both sides.
  await Promise.all([
    page.evaluate(() => { for (let i = 0; i < 20; i++) window.t.text.insert(window.t.text.length, `<w${i}>`) }),
    (async () => { for (let i = 0; i < 20; i++) { ytext.insert(0, `<y${i}>`); await sleep(1) } })()
  ])
  await until(page, (n) => (window.t.text.toString().match(/</g) || []).length === n, 40, 'all 40 tokens in wasm')
  for (let i = 0; i < 200 && (ytext.toString().match(/</g) || []).length !== 40; i++) await sleep(20)
  assert.equal(await page.evaluate(() => window.t.text.toString()), ytext.toString())

  // Presence both ways.
  const wasmId = await page.evaluate(() => window.t.awareness.clientID)
  for (let i = 0; i < 200 && !yprovider.awareness.getStates().get(wasmId); i++) await sleep(20)
  assert.equal(yprovider.awareness.getStates().get(wasmId)?.user?.name, 'wasm')
  await until(page, (id) => window.t.awareness.getStates().get(id)?.user?.name === 'yjs', ydoc.clientID, 'yjs presence in wasm')
  assert.deepEqual(errors, [])
})

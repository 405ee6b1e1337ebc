// Shared by the end-to-end tests: a real tandem-server on a free loopback port with a
// temporary SQLite file, and Debian's Chromium driven by playwright-core (never a
// downloaded browser).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import net from 'node:net'
import { chromium } from 'playwright-core'

export const ROOT = new URL('../../', import.meta.url).pathname
export const ARTIFACTS = join(ROOT, 'target', 'e2e-artifacts')
const SERVER = process.env.TANDEM_SERVER_BIN ?? `${ROOT}target/debug/tandem-server`
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export async function freePort () {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

export async function waitForPort (port) {
  for (let i = 0; i < 1000; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    await sleep(20)
  }
  throw new Error(`nothing listens on ${port}`)
}

/**
 * Starts tandem-server on a temporary SQLite database (or again on `port` and `dbDir` of
 * an earlier one); killed when the test ends.
 */
export async function startServer (t, args = [], port = null, dbDir = null) {
  port ??= await freePort()
  if (!dbDir) {
    dbDir = mkdtempSync(join(tmpdir(), 'tandem-e2e-'))
    t.after(() => rmSync(dbDir, { recursive: true, force: true }))
  }
  const proc = spawn(SERVER, ['--listen', `127.0.0.1:${port}`, '--database-url', `sqlite://${dbDir}/tandem.db`, ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' }
  })
  t.after(() => proc.kill('SIGKILL'))
  await waitForPort(port)
  return { url: `http://127.0.0.1:${port}`, port, proc, dbDir }
}

/** Headless Debian Chromium, closed when the test ends. */
export async function launch (t) {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  t.after(() => browser.close())
  return browser
}

/** Opens `url` in a new page of `context`, failing the test on page errors. */
export async function open (context, url, errors = []) {
  const page = await context.newPage()
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  await page.goto(url)
  return page
}

/** Waits until `fn` (run in the page) returns something truthy. */
export async function until (page, fn, arg, what, timeout = 20000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 20 })
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message.split('\n')[0]}`)
  }
}

export function artifactsDir () {
  mkdirSync(ARTIFACTS, { recursive: true })
  return ARTIFACTS
}

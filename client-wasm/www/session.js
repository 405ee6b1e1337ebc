// What every demo page does first: load the client, make a document, a presence with a
// remembered name and colour, and a provider connected to this server.
import init, { Doc, Awareness, Provider } from '/pkg/tandem_client.js'

const NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Ken', 'Radia', 'Leslie', 'Margaret', 'Donald']
const COLORS = ['#30bced', '#6eeb83', '#ffbc42', '#ee6352', '#9ac2c9', '#8a6fdf', '#1be7ff', '#e06bb0']
const pick = (list) => list[Math.floor(Math.random() * list.length)]

// Storage can be off limits (a third-party iframe, strict privacy settings).
export const remember = {
  get (key) { try { return JSON.parse(sessionStorage.getItem(key) || 'null') } catch { return null } },
  set (key, value) { try { sessionStorage.setItem(key, JSON.stringify(value)) } catch {} }
}

export function me () {
  const user = remember.get('tandem-user') || { name: pick(NAMES), color: pick(COLORS) }
  remember.set('tandem-user', user)
  return user
}

export async function openSession (prefix) {
  try {
    await init()
  } catch (e) {
    throw new Error('the browser client is not built: run scripts/build-client (' + e + ')')
  }
  const name = decodeURIComponent(location.pathname.slice(prefix.length))
  const params = new URLSearchParams(location.search)
  const doc = new Doc(name)
  const awareness = new Awareness(doc)
  awareness.setLocalState({ user: me(), status: 'online' })
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://'
  const readOnly = params.get('mode') === 'read'
  const options = {}
  const token = await tokenFor(name, readOnly ? 'read' : 'write', params)
  if (token) options.token = token
  if (params.get('transports')) options.transports = params.get('transports').split(',')
  if (params.get('upgrade')) options.upgradeInterval = Number(params.get('upgrade'))
  const provider = new Provider(scheme + location.host + '/ws', name, doc, awareness, options)
  return { name, doc, awareness, provider, readOnly }
}

// The page's access token: `?token=` when the link carries one (a server with
// --auth-secret), else one from the server's dev-only endpoint (an open server, where it
// makes `?mode=read` links read-only). No token at all: the server decides (an open server
// lets everyone write; a secured one refuses, and the page shows why).
async function tokenFor (name, mode, params) {
  if (params.get('token')) return params.get('token')
  try {
    const q = new URLSearchParams({ doc: name, mode, name: me().name })
    const res = await fetch('/api/dev/token?' + q)
    if (res.ok) return (await res.json()).token
  } catch {}
  return null
}

/** Keeps the status, saved and offline badges up to date. */
export function showStatus (provider) {
  const status = document.getElementById('status')
  const saved = document.getElementById('saved')
  const offline = document.getElementById('offline')
  provider.on('status', ({ status: s, transport }) => {
    status.textContent = s === 'connected' ? `connected · ${transport}` : s
    status.className = 'badge ' + s
    status.dataset.status = s
    status.dataset.transport = transport
  })
  provider.on('saved', (ok) => {
    saved.textContent = ok ? 'saved' : 'unsaved changes'
    saved.className = 'badge ' + (ok ? 'saved' : 'unsaved')
    saved.dataset.saved = String(ok)
  })
  provider.on('error', ({ code, reason }) => {
    document.getElementById('error').textContent = `the server refused this document (${code}): ${reason}`
  })
  const net = () => { offline.hidden = navigator.onLine }
  addEventListener('online', net)
  addEventListener('offline', net)
  net()
}

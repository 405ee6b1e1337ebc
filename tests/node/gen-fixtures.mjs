// Generates y-protocols frames with the real npm libraries (yjs, y-protocols, lib0), so the
// Rust codec is tested against what stock clients actually send — never against our own
// idea of the format. Deterministic: fixed client ids, fixed clocks, no timestamps.
//
// Usage: node gen-fixtures.mjs OUT.json
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import * as encoding from 'lib0/encoding'
import { writeFileSync } from 'node:fs'

const hex = (u8) => Buffer.from(u8).toString('hex')
const fixtures = []
const frame = (fill) => { const e = encoding.createEncoder(); fill(e); return encoding.toUint8Array(e) }

// A document with non-ASCII text so UTF-16 offsets matter: the emoji is 2 code units.
const doc = new Y.Doc()
doc.clientID = 12345
const text = doc.getText('content')
text.insert(0, 'héllo 😀 wörld')
text.insert(8, '!') // JS index 8 = right after the emoji (h é l l o ␠ 😀=2)
text.format(0, 5, { bold: true })
doc.getMap('meta').set('title', 'Fixture')
doc.getArray('list').push([1, 'two', { three: 3 }])

// sync step 1 of an empty and of a non-empty document
for (const [name, d] of [['sync_step1_empty', new Y.Doc()], ['sync_step1', doc]]) {
  fixtures.push({
    name, kind: 'sync_step1',
    hex: hex(frame(e => { encoding.writeVarUint(e, 0); syncProtocol.writeSyncStep1(e, d) })),
    state_vector: hex(Y.encodeStateVector(d))
  })
}

// sync step 2: what a stock server answers to an empty state vector
const full = Y.encodeStateAsUpdate(doc)
fixtures.push({
  name: 'sync_step2_full', kind: 'sync_step2',
  hex: hex(frame(e => { encoding.writeVarUint(e, 0); syncProtocol.writeSyncStep2(e, doc, new Uint8Array([0])) })),
  update: hex(full),
  text: text.toString(),
  delta: text.toDelta(),
  map: doc.getMap('meta').toJSON(),
  array: doc.getArray('list').toJSON()
})

// a live update, captured from the document's update event
let captured = null
doc.on('update', (u) => { captured = u })
text.insert(0, '✓ ')
fixtures.push({
  name: 'sync_update', kind: 'sync_update',
  hex: hex(frame(e => { encoding.writeVarUint(e, 0); syncProtocol.writeUpdate(e, captured) })),
  update: hex(captured),
  text: text.toString()
})

// a large update (multi-byte length prefix)
const big = new Y.Doc(); big.clientID = 777
big.getText('content').insert(0, 'x'.repeat(70000))
const bigUpdate = Y.encodeStateAsUpdate(big)
fixtures.push({
  name: 'sync_update_large', kind: 'sync_update',
  hex: hex(frame(e => { encoding.writeVarUint(e, 0); syncProtocol.writeUpdate(e, bigUpdate) })),
  update: hex(bigUpdate),
  text: big.getText('content').toString()
})

// awareness: several clients in a known order, one removal, unicode, a big clock
const docWithId = (id) => { const d = new Y.Doc(); d.clientID = id; return d }
const aw = new awarenessProtocol.Awareness(docWithId(1))
aw.setLocalState({ user: { name: 'Ada 😀', color: '#30bced' }, cursor: null })
const peer = new awarenessProtocol.Awareness(docWithId(4294967295))
peer.setLocalState({ user: { name: 'Max', color: '#ee6352' }, status: 'away' })
for (let i = 0; i < 200; i++) peer.setLocalStateField('n', i) // clock > 127: two-byte varUint
awarenessProtocol.applyAwarenessUpdate(aw, awarenessProtocol.encodeAwarenessUpdate(peer, [peer.clientID]), 'test')
const gone = new awarenessProtocol.Awareness(docWithId(99))
gone.setLocalState({ user: { name: 'Gone', color: '#000' } })
awarenessProtocol.applyAwarenessUpdate(aw, awarenessProtocol.encodeAwarenessUpdate(gone, [99]), 'test')
gone.setLocalState(null)
awarenessProtocol.applyAwarenessUpdate(aw, awarenessProtocol.encodeAwarenessUpdate(gone, [99]), 'test')
const order = [4294967295, 1, 99]
const awUpdate = awarenessProtocol.encodeAwarenessUpdate(aw, order)
fixtures.push({
  name: 'awareness_three_clients', kind: 'awareness',
  hex: hex(frame(e => { encoding.writeVarUint(e, 1); encoding.writeVarUint8Array(e, awUpdate) })),
  entries: order.map(id => ({
    client_id: id,
    clock: aw.meta.get(id).clock,
    state: JSON.stringify(aw.getStates().get(id) ?? null)
  }))
})
aw.destroy(); peer.destroy(); gone.destroy()

// auth: permission denied with a reason
fixtures.push({
  name: 'auth_permission_denied', kind: 'auth_denied',
  hex: hex(frame(e => { encoding.writeVarUint(e, 2); authProtocol.writePermissionDenied(e, 'token expired — ask for a new one') })),
  reason: 'token expired — ask for a new one'
})

// query awareness
fixtures.push({
  name: 'query_awareness', kind: 'query_awareness',
  hex: hex(frame(e => { encoding.writeVarUint(e, 3) }))
})

// UTF-16 semantics: the same edits by index in JS, to be repeated by index in Rust.
const u = new Y.Doc(); u.clientID = 4242
const ut = u.getText('content')
const steps = [[0, 0, 'a😀b'], [3, 0, 'X'], [1, 2, ''], [0, 0, '𝄞'], [2, 1, 'ü']]
for (const [pos, del, ins] of steps) { if (del) ut.delete(pos, del); if (ins) ut.insert(pos, ins) }
fixtures.push({
  name: 'utf16_edits', kind: 'utf16_edits',
  hex: hex(Y.encodeStateAsUpdate(u)),
  steps,
  text: ut.toString()
})

writeFileSync(process.argv[2], JSON.stringify({ generator: 'yjs ' + '13.6.33' + ', y-protocols 1.0.7', fixtures }, null, 2) + '\n')
console.log(`wrote ${fixtures.length} fixtures to ${process.argv[2]}`)

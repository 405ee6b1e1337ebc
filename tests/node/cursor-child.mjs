// A y-websocket client in its own process (so a test can SIGKILL it): joins ROOM at URL,
// publishes a user and a caret (relative positions, as y-codemirror does), prints its
// client id, and then just stays connected.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [url, room] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket })
provider.on('sync', (synced) => {
  if (!synced) return
  const text = doc.getText('content')
  const at = Math.min(3, text.length)
  const pos = Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(text, at))
  provider.awareness.setLocalStateField('user', { name: 'doomed', color: '#123456' })
  provider.awareness.setLocalStateField('cursor', { anchor: pos, head: pos })
  console.log(String(doc.clientID))
})

// How to bind a real editor: CodeMirror 6 on a Tandem text. Local transactions become
// text edits; remote deltas become CodeMirror changes (annotated so they are not sent
// back); remote carets are decorations built from awareness. Bundled by
// scripts/build-client into pkg/codemirror.bundle.js (the client itself stays external).
import { EditorView, basicSetup } from 'codemirror'
import { Annotation, StateEffect, StateField } from '@codemirror/state'
import { Decoration, WidgetType } from '@codemirror/view'
import { PresenceList } from '/pkg/tandem_client.js'
import { openSession, showStatus } from '/static/session.js'

const remote = Annotation.define()
const setCarets = StateEffect.define()

class CaretWidget extends WidgetType {
  constructor (name, color) { super(); this.name = name; this.color = color }
  eq (other) { return other.name === this.name && other.color === this.color }
  toDOM () {
    const caret = document.createElement('span')
    caret.className = 'tandem-caret'
    caret.dataset.name = this.name
    caret.style.cssText = `border-left:2px solid ${this.color};margin:0 -1px;position:relative`
    const tag = document.createElement('span')
    tag.textContent = this.name
    tag.style.cssText = `position:absolute;left:-2px;bottom:100%;font:bold 11px system-ui;color:#fff;background:${this.color};padding:0 4px;white-space:nowrap`
    caret.appendChild(tag)
    return caret
  }
}

const caretField = StateField.define({
  create: () => Decoration.none,
  update (value, tr) {
    value = value.map(tr.changes)
    for (const e of tr.effects) if (e.is(setCarets)) value = e.value
    return value
  },
  provide: (f) => EditorView.decorations.from(f)
})

function caretDecorations (awareness, text, length) {
  const ranges = []
  for (const [client, state] of awareness.getStates()) {
    if (client === awareness.clientID || !state.cursor) continue
    const offsets = text.cursorOffsets(state.cursor)
    if (!offsets) continue
    const [anchor, head] = offsets.map((o) => Math.min(o, length))
    const { name = 'anonymous', color = '#30bced' } = state.user || {}
    if (anchor !== head) {
      ranges.push(Decoration.mark({ attributes: { style: `background:${color}4d` } }).range(Math.min(anchor, head), Math.max(anchor, head)))
    }
    ranges.push(Decoration.widget({ widget: new CaretWidget(name, color), side: 1 }).range(head))
  }
  return Decoration.set(ranges, true)
}

try {
  const { name, doc, awareness, provider } = await openSession('/codemirror/')
  document.getElementById('doc-name').textContent = name
  showStatus(provider)
  new PresenceList(awareness, document.getElementById('people'))
  const text = doc.getText('content')
  const view = new EditorView({
    doc: text.toString(),
    parent: document.getElementById('editor'),
    extensions: [
      basicSetup,
      caretField,
      EditorView.updateListener.of((update) => {
        if (update.docChanged && !update.transactions.some((t) => t.annotation(remote))) {
          // Apply from the end so earlier offsets stay valid.
          const changes = []
          update.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => changes.push([fromA, toA, inserted.toString()]))
          for (const [from, to, insert] of changes.reverse()) text.replace(from, to - from, insert)
        }
        if (update.selectionSet || update.docChanged) {
          const sel = update.state.selection.main
          awareness.setLocalStateField('cursor', text.relativeCursor(sel.anchor, sel.head))
        }
      })
    ]
  })
  text.observe((delta, isRemote) => {
    if (!isRemote) return
    const changes = []
    let pos = 0
    for (const op of delta) {
      if (op.retain !== undefined) pos += op.retain
      else if (op.delete !== undefined) { changes.push({ from: pos, to: pos + op.delete }); pos += op.delete }
      else changes.push({ from: pos, insert: typeof op.insert === 'string' ? op.insert : '\ufffc' })
    }
    view.dispatch({ changes, annotations: remote.of(true) })
  })
  const redraw = () => view.dispatch({ effects: setCarets.of(caretDecorations(awareness, text, view.state.doc.length)) })
  awareness.on(redraw)
  window.tandem = { doc, text, awareness, provider, view }
} catch (e) {
  document.getElementById('error').textContent = String(e)
  throw e
}

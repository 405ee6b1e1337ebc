// The shared editor page (/d/{doc}): a textarea bound to the document's text, remote
// carets, presence, connection and save status, undo/redo of one's own edits.
import { TextAreaBinding, ContentEditableBinding, PresenceList, UndoManager } from '/pkg/tandem_client.js'
import { openSession, showStatus, remember } from '/static/session.js'

try {
  const { name, doc, awareness, provider, readOnly } = await openSession('/d/')
  document.title = `${name} — Tandem`
  document.getElementById('doc-name').textContent = name
  showStatus(provider)
  const text = doc.getText('content')
  let textarea = document.getElementById('editor')
  let binding
  if (new URLSearchParams(location.search).get('editor') === 'contenteditable') {
    // The same editor on a contenteditable element (what rich editors build on).
    const box = document.createElement('div')
    box.id = 'editor'
    box.className = 'editor-box'
    textarea.replaceWith(box)
    textarea = box
    binding = new ContentEditableBinding(text, box, awareness)
  } else {
    binding = new TextAreaBinding(text, textarea, awareness)
  }
  if (readOnly) {
    // The server refuses a viewer's edits; do not let the page pretend otherwise.
    if (textarea.tagName === 'TEXTAREA') textarea.readOnly = true
    else textarea.contentEditable = 'false'
    document.getElementById('doc-name').textContent = name + ' (read-only)'
  }
  const people = new PresenceList(awareness, document.getElementById('people'))
  const undo = new UndoManager(text)
  textarea.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.key.toLowerCase() !== 'z') return
    e.preventDefault()
    if (e.shiftKey) undo.redo(); else undo.undo()
  })
  const user = awareness.getLocalState().user
  const nameInput = document.getElementById('me-name')
  const colorInput = document.getElementById('me-color')
  nameInput.value = user.name
  colorInput.value = user.color
  const rename = () => {
    const u = { name: nameInput.value || 'anonymous', color: colorInput.value }
    remember.set('tandem-user', u)
    awareness.setLocalStateField('user', u)
  }
  nameInput.addEventListener('change', rename)
  colorInput.addEventListener('change', rename)
  // For the end-to-end tests and the curious.
  window.tandem = { doc, text, awareness, provider, binding, people, undo }
} catch (e) {
  document.getElementById('error').textContent = String(e)
  throw e
}

// The document list: GET /api/docs, and a form that opens (creating) a document.
const tbody = document.getElementById('docs')
const open = (name) => { location.href = '/d/' + encodeURIComponent(name) }

document.getElementById('new').addEventListener('submit', (e) => {
  e.preventDefault()
  const input = document.getElementById('name')
  const name = input.value.trim() || Math.random().toString(36).slice(2, 8)
  open(name)
})

function cell (row, text) {
  const td = document.createElement('td')
  td.textContent = text
  row.appendChild(td)
  return td
}

async function load () {
  try {
    const res = await fetch('/api/docs')
    const { documents } = await res.json()
    tbody.textContent = ''
    if (documents.length === 0) cell(tbody.insertRow(), 'no documents yet: create one above').colSpan = 4
    for (const d of documents) {
      const row = tbody.insertRow()
      const a = document.createElement('a')
      a.href = '/d/' + encodeURIComponent(d.name)
      a.textContent = d.name
      cell(row, '').appendChild(a)
      cell(row, `${(d.size_bytes / 1024).toFixed(1)} KB`)
      cell(row, new Date(d.updated_at).toLocaleString())
      const cm = document.createElement('a')
      cm.href = '/codemirror/' + encodeURIComponent(d.name)
      cm.textContent = 'CodeMirror'
      cell(row, '').appendChild(cm)
    }
  } catch (e) {
    document.getElementById('error').textContent = 'cannot list documents: ' + e
  }
}
load()

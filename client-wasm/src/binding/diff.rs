//! The text arithmetic of editor bindings, in UTF-16 code units (what the DOM counts):
//! the minimal replacement between two versions of a field (local typing → one edit) and
//! applying a remote delta to a field while keeping the local selection on the same text.

use tandem_engine::yrs::Any;
use tandem_engine::TextDelta;

/// One replacement: at `index`, remove `delete` units and insert `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    /// Where the change starts.
    pub index: u32,
    /// Units removed.
    pub delete: u32,
    /// Units inserted.
    pub insert: Vec<u16>,
}

fn is_high_surrogate(u: u16) -> bool {
    (0xD800..0xDC00).contains(&u)
}

fn is_low_surrogate(u: u16) -> bool {
    (0xDC00..0xE000).contains(&u)
}

/// The smallest splice turning `old` into `new`, or `None` if they are equal. `caret` is
/// where the caret is in `new` after the edit: when the change is ambiguous (typing "a"
/// into "aa") it places the change right before the caret, where the user typed.
pub fn splice(old: &[u16], new: &[u16], caret: Option<u32>) -> Option<Splice> {
    if old == new {
        return None;
    }
    let shortest = old.len().min(new.len());
    let mut suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take_while(|(a, b)| a == b)
        .count()
        .min(shortest);
    if let Some(caret) = caret {
        suffix = suffix.min(new.len().saturating_sub(caret as usize));
    }
    let mut prefix = old
        .iter()
        .zip(new)
        .take_while(|(a, b)| a == b)
        .count()
        .min(shortest - suffix);
    // Never split a surrogate pair.
    if prefix > 0 && is_high_surrogate(new[prefix - 1]) {
        prefix -= 1;
    }
    if suffix > 0 && is_low_surrogate(new[new.len() - suffix]) {
        suffix -= 1;
    }
    Some(Splice {
        index: prefix as u32,
        delete: (old.len() - prefix - suffix) as u32,
        insert: new[prefix..new.len() - suffix].to_vec(),
    })
}

/// The UTF-16 text an inserted value stands for (embeds count as one character).
fn inserted(value: &Any) -> Vec<u16> {
    match value {
        Any::String(s) => s.encode_utf16().collect(),
        _ => vec![0xFFFC],
    }
}

/// Applies `delta` to `value`, moving each of `points` (selection ends, carets) with the
/// text around it: a point at an insertion stays before it; a point inside a deletion
/// goes to its start.
pub fn apply_delta(value: &[u16], delta: &[TextDelta], points: &mut [u32]) -> Vec<u16> {
    let mut out = Vec::with_capacity(value.len());
    let mut pos = 0usize; // in `value`
    let originals: Vec<u32> = points.to_vec();
    let mut shift: Vec<i64> = vec![0; points.len()];
    for op in delta {
        match op {
            TextDelta::Retain { retain, .. } => {
                let end = (pos + *retain as usize).min(value.len());
                out.extend_from_slice(&value[pos..end]);
                pos = end;
            }
            TextDelta::Insert { insert, .. } => {
                let text = inserted(insert);
                for (i, p) in originals.iter().enumerate() {
                    if (*p as usize) > pos {
                        shift[i] += text.len() as i64;
                    }
                }
                out.extend_from_slice(&text);
            }
            TextDelta::Delete { delete } => {
                let end = (pos + *delete as usize).min(value.len());
                for (i, p) in originals.iter().enumerate() {
                    let p = *p as usize;
                    if p > pos {
                        shift[i] -= (p.min(end) - pos) as i64;
                    }
                }
                pos = end;
            }
        }
    }
    out.extend_from_slice(&value[pos..]);
    for (i, p) in points.iter_mut().enumerate() {
        *p = (originals[i] as i64 + shift[i]).clamp(0, out.len() as i64) as u32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn splice_finds_the_minimal_change_where_the_caret_is() {
        assert_eq!(splice(&u("abc"), &u("abc"), None), None);
        let s = splice(&u("hello"), &u("help"), None).unwrap();
        assert_eq!((s.index, s.delete, s.insert), (3, 2, u("p")));
        // Typing "a" between the two a's of "aa": the caret (2) says where.
        let s = splice(&u("aa"), &u("aaa"), Some(2)).unwrap();
        assert_eq!((s.index, s.delete, s.insert), (1, 0, u("a")));
        let s = splice(&u("aa"), &u("aaa"), Some(3)).unwrap();
        assert_eq!((s.index, s.delete, s.insert), (2, 0, u("a")));
        // Replacing a selection.
        let s = splice(&u("one two three"), &u("one 2 three"), Some(5)).unwrap();
        assert_eq!((s.index, s.delete, s.insert), (4, 3, u("2")));
        // An emoji is never cut in half.
        let s = splice(&u("a😀"), &u("a😃"), None).unwrap();
        assert_eq!((s.index, s.delete), (1, 2));
        assert_eq!(String::from_utf16(&s.insert).unwrap(), "😃");
    }

    #[test]
    fn remote_deltas_keep_the_local_selection_on_its_text() {
        let value = u("hello world");
        let delta = vec![
            TextDelta::Retain {
                retain: 6,
                attributes: None,
            },
            TextDelta::Insert {
                insert: Any::from("big "),
                attributes: None,
            },
            TextDelta::Retain {
                retain: 2,
                attributes: None,
            },
            TextDelta::Delete { delete: 3 },
        ];
        // A caret before, at and after the insertion, and one inside the deletion.
        let mut points = [2, 6, 7, 9];
        let out = apply_delta(&value, &delta, &mut points);
        assert_eq!(String::from_utf16(&out).unwrap(), "hello big wo");
        assert_eq!(points, [2, 6, 11, 12]);
    }

    #[test]
    fn splice_then_apply_round_trips() {
        for (old, new) in [("", "x"), ("abc", ""), ("kitten", "sitting"), ("aXb", "ab")] {
            let s = splice(&u(old), &u(new), None).unwrap();
            let delta = vec![
                TextDelta::Retain {
                    retain: s.index,
                    attributes: None,
                },
                TextDelta::Delete { delete: s.delete },
                TextDelta::Insert {
                    insert: Any::from(String::from_utf16(&s.insert).unwrap()),
                    attributes: None,
                },
            ];
            assert_eq!(
                apply_delta(&u(old), &delta, &mut []),
                u(new),
                "{old} -> {new}"
            );
        }
    }
}

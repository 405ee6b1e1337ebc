//! `--allowed-origins`: which web pages may open WebSockets here. Browsers send the page's
//! origin with every WebSocket handshake and WebSockets are not bound by CORS, so without
//! this check any site a user visits could edit documents with the user's cookies or
//! network position.

/// Whether a handshake with `origin` (its `Origin` header) is allowed by `allowed`. An
/// empty list allows everything; a request without the header is not from a browser page
/// and is allowed (a non-browser client could send any value anyway).
pub fn allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(origin) => {
            allowed.is_empty()
                || allowed
                    .iter()
                    .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::allowed;

    /// Exact origins only (scheme, host and port), case-insensitively, with `*` and the
    /// empty list meaning "any".
    #[test]
    fn only_listed_origins_pass() {
        let list = vec!["https://app.example.com".to_owned()];
        assert!(allowed(Some("https://app.example.com"), &list));
        assert!(allowed(Some("HTTPS://APP.example.com"), &list));
        assert!(!allowed(Some("https://evil.example.com"), &list));
        assert!(!allowed(Some("http://app.example.com"), &list));
        assert!(allowed(None, &list));
        assert!(allowed(Some("https://x"), &[]));
        assert!(allowed(Some("https://x"), &["*".to_owned()]));
    }
}

//! Document names as clients send them: y-websocket appends the name to the server URL, so
//! it arrives percent-encoded in the path; the HTTP API takes it as one (encoded) segment.

/// Longest accepted document name, in bytes after decoding.
pub const MAX_NAME_BYTES: usize = 512;

/// Decodes and validates a document name from the path tail. Names are what y-websocket
/// appends to the server URL: any UTF-8 without control characters, slashes allowed.
pub fn doc_name(tail: &str) -> Result<String, &'static str> {
    let decoded = percent_encoding::percent_decode_str(tail)
        .decode_utf8()
        .map_err(|_| "document name is not valid UTF-8")?;
    if decoded.is_empty() {
        return Err("document name is empty");
    }
    if decoded.len() > MAX_NAME_BYTES {
        return Err("document name is longer than 512 bytes");
    }
    if decoded.chars().any(char::is_control) {
        return Err("document name contains control characters");
    }
    Ok(decoded.into_owned())
}

/// A request named a document that cannot exist; answered with 400 and the reason.
#[derive(Debug)]
pub struct BadName(pub &'static str);

impl warp::reject::Reject for BadName {}

/// Extracts the next path segment as a decoded, valid document name (a `/` inside a name
/// is `%2F`), or rejects the request with [`BadName`].
pub fn segment() -> impl warp::Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    warp::path::param::<String>().and_then(|raw: String| async move {
        doc_name(&raw).map_err(|e| warp::reject::custom(BadName(e)))
    })
}

//! `GET /api/dev/token?doc=&mode=&name=`: tokens for the demo page on a server without
//! `--auth-secret`, signed with a key that lives only as long as the process. It lets the
//! demo show read-only links without any setup; with a secret configured the route answers
//! 404, because then tokens must come from whoever holds the secret.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use warp::http::{Response, StatusCode};
use warp::hyper::body::Bytes as Body;
use warp::Filter;

use crate::auth::Mode;
use crate::http::api::{error, json};
use crate::http::doc_name::doc_name;
use crate::state::AppState;

/// How long a dev token lasts.
const DEV_TTL: Duration = Duration::from_secs(24 * 3600);

/// The route.
pub fn route(
    state: AppState,
) -> impl Filter<Extract = (Response<Body>,), Error = warp::Rejection> + Clone {
    warp::path!("api" / "dev" / "token")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .map(move |query: HashMap<String, String>| mint(&state, &query))
}

fn mint(state: &AppState, query: &HashMap<String, String>) -> Response<Body> {
    let Some(keys) = state.auth.dev_keys() else {
        return error(
            StatusCode::NOT_FOUND,
            "dev tokens are off: this server has --auth-secret",
        );
    };
    let doc = match query
        .get("doc")
        .map(|d| if d == "*" { Ok(d.clone()) } else { doc_name(d) })
    {
        Some(Ok(doc)) => doc,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        None => return error(StatusCode::BAD_REQUEST, "doc= is required"),
    };
    let mode = match query.get("mode").map(String::as_str) {
        None | Some("write") => Mode::Write,
        Some("read") => Mode::Read,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("mode={other}: read or write"),
            )
        }
    };
    let name = query.get("name").cloned();
    let token = keys.mint(&doc, mode, name, DEV_TTL);
    json(
        StatusCode::OK,
        &json!({ "token": token, "doc": doc, "mode": mode }),
    )
}

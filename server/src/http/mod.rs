//! HTTP routing: warp filters (matching, extraction, status codes), and the y-websocket
//! upgrades the listener answers before hyper (`early_upgrade`).

pub mod access;
pub mod api;
pub mod body;
pub mod catchup;
pub mod demo;
pub mod dev_token;
pub mod doc_name;
pub mod early_upgrade;
pub mod health;
pub mod metrics;
pub mod poll;
pub mod post;
pub mod sse;
pub mod ws;

use warp::Filter;

use crate::state::AppState;

/// Every route of the server.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    ws::route(state.clone())
        .or(api::routes(state.clone()))
        .or(post::routes(state.clone()))
        .or(sse::route(state.clone()))
        .or(poll::route(state.clone()))
        .or(health::routes(state.clone()))
        .or(metrics::route(state.clone()))
        .or(dev_token::route(state.clone()))
        .or(demo::routes(state))
        .recover(|rej: warp::Rejection| async move {
            Ok::<_, std::convert::Infallible>(rejection(&rej))
        })
}

/// A JSON error for a request no route accepted, with the status that says why.
fn rejection(rej: &warp::Rejection) -> warp::http::Response<warp::hyper::body::Bytes> {
    use warp::http::StatusCode;
    if let Some(denied) = rej.find::<access::Denied>() {
        return denied.response();
    }
    if let Some(access::OriginRefused(origin)) = rej.find() {
        return api::error(
            StatusCode::FORBIDDEN,
            format!("origin {origin} is not allowed (--allowed-origins)"),
        );
    }
    if let Some(access::RateLimited(per_second)) = rej.find() {
        let mut response = api::error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {per_second} requests per second from your address \
                 (--max-http-requests-per-ip)"
            ),
        );
        response.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from_static("1"),
        );
        return response;
    }
    let (status, message) = if let Some(doc_name::BadName(why)) = rej.find() {
        (StatusCode::BAD_REQUEST, why.to_string())
    } else if rej.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_owned())
    } else if rej.find::<body::BodyTimeout>().is_some() {
        // The rest of the body may still be on its way: the connection cannot carry another
        // request, so it is closed rather than drained.
        let mut response = api::error(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive within --body-timeout-ms",
        );
        response.headers_mut().insert(
            warp::http::header::CONNECTION,
            warp::http::HeaderValue::from_static("close"),
        );
        return response;
    } else if let Some(body::BodyUnreadable(why)) = rej.find() {
        (
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {why}"),
        )
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body larger than --max-frame-bytes".to_owned(),
        )
    } else if rej.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required".to_owned(),
        )
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_owned(),
        )
    } else if let Some(e) = rej.find::<warp::reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else {
        (StatusCode::BAD_REQUEST, format!("{rej:?}"))
    };
    api::error(status, message)
}

//! HTTP routing (warp filters only: matching, extraction, status codes).

pub mod health;
pub mod metrics;
pub mod ws;

use warp::Filter;

use crate::state::AppState;

/// Every route of the server.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    ws::route(state.clone())
        .or(health::routes(state.clone()))
        .or(metrics::route(state))
        .recover(|_rej: warp::Rejection| async {
            Ok::<_, std::convert::Infallible>(warp::reply::with_status(
                warp::reply::json(&serde_json::json!({ "error": "not found" })),
                warp::http::StatusCode::NOT_FOUND,
            ))
        })
}

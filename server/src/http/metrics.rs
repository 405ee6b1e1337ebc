//! `/metrics` in the Prometheus text format.

use warp::Filter;

use crate::state::AppState;

/// The metrics route.
pub fn route(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            state.metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    })
}

//! `/healthz` (the process answers) and `/readyz` (it can serve: storage reachable).

use warp::Filter;

use crate::state::AppState;

/// Liveness and readiness routes.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        // Documents live in memory in this build; readiness = the hub is up.
        let body = serde_json::json!({
            "ready": true,
            "documents_loaded": state.registry.loaded(),
            "connections": state.connections.current(),
        });
        warp::reply::json(&body)
    });
    healthz.or(readyz)
}

//! `/healthz` (the process answers) and `/readyz` (it can serve: the database answers,
//! the last group commit went through and, in cluster mode, the Redis link is up; 503
//! during an outage).

use std::time::Duration;

use warp::http::StatusCode;
use warp::Filter;

use crate::state::AppState;

/// Liveness and readiness routes.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let state = state.clone();
        async move {
            let store = state.registry.store();
            let ping = tokio::time::timeout(Duration::from_secs(2), store.ping()).await;
            let db_error = match ping {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("database did not answer within 2 s".to_owned()),
            };
            let writer = state.registry.writer();
            let cluster = state.registry.cluster();
            let redis_error = cluster.and_then(|c| c.status().err());
            let ready = db_error.is_none() && writer.is_healthy() && redis_error.is_none();
            let body = serde_json::json!({
                "ready": ready,
                "database": store.backend(),
                "database_error": db_error.or_else(|| writer.last_error()),
                "unsaved_updates": writer.pending(),
                "documents_loaded": state.registry.loaded(),
                "connections": state.connections.current(),
                "node": cluster.map(|c| c.node().to_string()),
                "redis_error": redis_error,
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(warp::reply::json(&body), status)
        }
    });
    healthz.or(readyz)
}

//! The demo: `/` lists documents and creates new ones, `/d/{doc}` opens an editor on one
//! (several tabs on one URL edit together), `/codemirror/{doc}` shows the client inside
//! CodeMirror 6. Pages come from `--web-dir`/www, the compiled client from
//! `--web-dir`/pkg (built by `scripts/build-client`).

use warp::Filter;

use crate::state::AppState;

/// The demo routes.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let www = state.config.web_dir.join("www");
    let pkg = state.config.web_dir.join("pkg");
    let page = |file: &str| warp::fs::file(www.join(file));
    let index = warp::path::end().and(warp::get()).and(page("index.html"));
    let editor = warp::path("d")
        .and(warp::path::tail())
        .and(warp::get())
        .and(page("editor.html"))
        .map(|_tail, file| file);
    let codemirror = warp::path("codemirror")
        .and(warp::path::tail())
        .and(warp::get())
        .and(page("codemirror.html"))
        .map(|_tail, file| file);
    let statics = warp::path("static").and(warp::fs::dir(www));
    let client = warp::path("pkg").and(warp::fs::dir(pkg));
    index
        .or(editor)
        .or(codemirror)
        .or(statics)
        .or(client)
        .with(warp::reply::with::header("cache-control", "no-cache"))
}

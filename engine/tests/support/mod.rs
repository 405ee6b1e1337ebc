//! Loading the shared editing traces (gzip JSON) for tests and benchmarks.

use std::io::Read;
use std::path::PathBuf;

use tandem_engine::trace::{ConcurrentTrace, SequentialTrace};

/// `$TANDEM_TRACES`, or `../shared/traces` beside the checkout.
pub fn traces_dir() -> PathBuf {
    std::env::var_os("TANDEM_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces"))
}

/// Every sequential trace (name, parsed), sorted by name. Panics with a clear message if
/// the directory is missing: a silently skipped trace test would prove nothing.
pub fn sequential_traces() -> Vec<(String, SequentialTrace)> {
    let dir = traces_dir().join("sequential");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "trace directory {} unreadable ({e}); set TANDEM_TRACES",
                dir.display()
            )
        })
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|p| (name_of(&p), load(&p)))
        .collect()
}

/// One sequential trace by file stem, e.g. `automerge-paper`.
#[allow(dead_code)]
pub fn sequential_trace(name: &str) -> SequentialTrace {
    load(
        &traces_dir()
            .join("sequential")
            .join(format!("{name}.json.gz")),
    )
}

/// Both concurrent (multi-agent DAG) traces, sorted by name.
#[allow(dead_code)]
pub fn concurrent_traces() -> Vec<(String, ConcurrentTrace)> {
    let dir = traces_dir().join("concurrent");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("trace directory {} unreadable ({e})", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|p| (name_of(&p), load_json(&p)))
        .collect()
}

fn name_of(p: &std::path::Path) -> String {
    p.file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".json.gz")
        .to_owned()
}

fn load(path: &std::path::Path) -> SequentialTrace {
    load_json(path)
}

fn load_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> T {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

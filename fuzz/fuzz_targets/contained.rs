//! Shared by the fuzz targets: the engine contains yrs panics on hostile input
//! (`catch_unwind` → `DocError::Poisoned`, or a decode error). libfuzzer-sys' panic hook
//! would abort on those before the engine could catch them, so the targets install this
//! hook, which only records the message; a panic that escapes the check is still a crash
//! (printed, then aborted). Contained panics are allowed; each new one is printed once,
//! and with `TANDEM_FUZZ_STRICT=1` in the environment they count as crashes too.

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once};

thread_local! {
    /// The last panic message on this thread (set by the hook, taken after each input).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Contained panics already reported (by message), so each is printed once.
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Replaces libfuzzer-sys' aborting panic hook with one that only records the message.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
        }));
    });
}

/// Runs one input's check under the recording hook; aborts (a crash for libFuzzer) when a
/// panic escapes it.
pub fn run(check: impl FnOnce()) {
    install_hook();
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = catch_unwind(AssertUnwindSafe(check));
    let panic = LAST_PANIC.with(|p| p.borrow_mut().take());
    match result {
        Err(_) => {
            eprintln!(
                "uncaught panic: {}",
                panic.as_deref().unwrap_or("(no message)")
            );
            std::process::abort();
        }
        Ok(()) => {
            if let Some(message) = panic {
                if std::env::var_os("TANDEM_FUZZ_STRICT").is_some_and(|v| v == "1") {
                    eprintln!("contained panic (TANDEM_FUZZ_STRICT=1): {message}");
                    std::process::abort();
                }
                let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
                if seen
                    .get_or_insert_with(HashSet::new)
                    .insert(message.clone())
                {
                    eprintln!("note: contained panic (allowed): {message}");
                }
            }
        }
    }
}

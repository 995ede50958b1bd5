//! The server's allocator, and keeping its resident memory close to what it is using.
//!
//! The `edthub` binary allocates with mimalloc (`main.rs`). With glibc's allocator, allocation
//! took about a sixth of the hub's CPU under load (`_int_malloc`, `malloc_consolidate`,
//! `unlink_chunk` in perf); with mimalloc the hub used about a quarter less CPU per document. mimalloc
//! holds pages a thread has freed for a second before giving them back; the server has it give
//! them back after a tenth of a second ([`configure`]), and a runtime thread that goes idle
//! gives back what it has freed ([`idle`]; mimalloc does it only when the thread allocates).
//! Measured after bursts: with the second, 139 MB resident after 300 5 MB documents; giving
//! pages back at once held the hub about 12 MB lower after 20 KB documents, but cost 5 MB
//! documents a fifth more CPU (each large buffer faulted in afresh), where a tenth of a second
//! costs them nothing. After 100,000 20 KB documents the hub settles at 116 MB (92 MB on
//! glibc's allocator).
//!
//! What still comes from glibc (C code, and the tests, which run on the system allocator):
//! every thread that allocates under contention can get an arena of its own (up to eight per
//! core), and memory freed into an arena stays resident until the arena is trimmed. The server
//! therefore caps the arenas at start-up and, after busy periods and during the console's long
//! reads, [`trim`] gives back what glibc and the calling thread's mimalloc heap hold freed.
//! Elsewhere than Linux with glibc the arena steps are no-ops.

/// mimalloc's `mi_option_purge_delay`: how long freed pages are held before they are given
/// back, in milliseconds (its position in mimalloc's option list, which the bindings do not
/// name; the test below checks it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long the server lets mimalloc hold freed pages, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Tunes the allocators for a long-running server. Call before starting any thread.
#[allow(unsafe_code)]
pub fn configure() {
    limit_arenas();
    // SAFETY: mi_option_set only changes allocator tuning; mimalloc reads this option each
    // time it schedules a purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Least time between two collections of one thread's freed pages ([`idle`]).
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Called when a runtime thread has nothing to do: at most once per [`COLLECT_EVERY`], has
/// mimalloc give back the pages this thread has freed (it does so only when the thread
/// allocates, so a thread that goes quiet after a burst would hold them).
#[allow(unsafe_code)]
pub fn idle() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    if LAST.with(|last| due(last, std::time::Instant::now())) {
        // SAFETY: mi_collect only returns this thread's free memory to the system.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// Whether a collection last made at `last` is to be made again at `now` (then `now` is kept).
fn due(last: &std::cell::Cell<Option<std::time::Instant>>, now: std::time::Instant) -> bool {
    match last.get() {
        Some(t) if now.saturating_duration_since(t) < COLLECT_EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    }
}

/// Arenas glibc may use: enough for two cores' worth of threads to allocate
/// without queueing on one lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Caps glibc's arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_arenas() {
    // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX takes a positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns memory this thread has freed (mimalloc) and memory freed into glibc's arenas to
/// the system.
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: mi_collect only returns free memory to the system.
    unsafe { libmimalloc_sys::mi_collect(true) };
    trim_arenas();
}

/// Returns memory freed into glibc's arenas to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_arenas() {
    // SAFETY: malloc_trim releases free pages only; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_arenas() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_arenas() {}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::{due, COLLECT_EVERY, MI_OPTION_PURGE_DELAY};
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    #[test]
    fn an_idle_thread_collects_at_most_once_per_interval() {
        let last = Cell::new(None);
        let start = Instant::now();
        assert!(due(&last, start), "the first idle moment collects");
        assert!(!due(&last, start + Duration::from_millis(10)));
        assert!(!due(
            &last,
            start + COLLECT_EVERY - Duration::from_millis(1)
        ));
        assert!(due(&last, start + COLLECT_EVERY));
        assert!(!due(
            &last,
            start + COLLECT_EVERY + Duration::from_millis(1)
        ));
    }

    #[test]
    fn the_purge_delay_is_the_option_set() {
        // mimalloc's purge delay defaults to 1000 ms, and no other option of its defaults to
        // 1000: a different number here means the option list moved and `configure` would
        // tune something else.
        // SAFETY: mi_option_get only reads an option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            1000
        );
    }
}

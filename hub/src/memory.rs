//! Keeping the server's resident memory close to what it is using.
//!
//! With glibc's allocator, every thread that allocates under contention can get an arena of
//! its own (up to eight per core), and memory freed into an arena stays resident until the
//! arena is trimmed. After a burst of documents that is tens of megabytes the hub no longer
//! uses. The server therefore caps the arenas at start-up and gives freed memory back to the
//! system after busy periods. Elsewhere these are no-ops.

/// Arenas the server's allocator may use: enough for two cores' worth of threads to allocate
/// without queueing on one lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Caps the allocator's arenas. Call before starting any thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_arenas() {
    // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX takes a positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns memory freed into the allocator's arenas to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: malloc_trim releases free pages only; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

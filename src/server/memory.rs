//! Giving memory back. glibc's allocator keeps freed memory in its arenas, and after a large
//! free it raises the size above which it maps blocks directly, so a burst of big answers leaves
//! the process resident at its peak. Janus fixes that threshold (large buffers are mapped and
//! returned when freed), caps the arenas, and trims the heap now and then, so RSS falls back
//! near idle after a heavy query.

use std::time::Duration;

/// How often free heap pages are handed back to the kernel.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Sets the allocator's thresholds; call once at start-up, before threads are spawned.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's tuning parameters; it is called before any other
    // thread exists, with constants from glibc's own header.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Returns free heap memory to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

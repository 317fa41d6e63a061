//! The allocator settings the service gives itself, before its first
//! thread: glibc's `malloc` only, and only where the operator set none.
//!
//! glibc's default keeps much of what the service frees: the size from
//! which a block is served by `mmap` (and given back when freed) rises to
//! the largest such block freed, up to 32 MiB, and the heap is trimmed
//! only above twice that. A Kafka batch's write statement binds about a
//! megabyte of arguments, so after the first batch every such buffer comes
//! from an arena, and its pages stay with the process when it is freed.
//! Fixing both thresholds at 128 KiB (which also stops them rising) took
//! the 1M-record Kafka bench's peak RSS from 72 to 62 MB at no measurable
//! cost in rate (BENCHMARKS.md, "Memory").
//!
//! The number of arenas is capped at two. glibc's default, eight per core,
//! gives most of the service's 17 threads (librdkafka's among them) an
//! arena of their own, and each keeps the free memory its thread left.
//! Two saved 3–4 MB of the peak (BENCHMARKS.md, "Memory"); one cost
//! 10% of the rate, as every thread then waits on one lock.
//!
//! An operator's `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or
//! `MALLOC_ARENA_MAX` wins: each setting is left alone when its variable
//! is set.

/// Blocks from this size up are mapped on their own and unmapped when
/// freed, and free memory above it at the top of the heap is given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: i32 = 128 * 1024;

/// The most arenas threads allocate from.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Applies the settings above. Call it first in `main`, before any thread
/// starts, so that no other thread allocates while they change.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, THRESHOLD),
            ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, THRESHOLD),
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENAS),
        ];
        for (variable, parameter, value) in settings {
            if std::env::var_os(variable).is_none() {
                // SAFETY: mallopt only changes the allocator's parameters;
                // these are valid ones, and no other thread runs yet.
                let done = unsafe { libc::mallopt(parameter, value) };
                debug_assert_eq!(done, 1, "glibc accepts {variable}");
            }
        }
    }
}

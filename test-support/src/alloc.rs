//! A counting global allocator: it forwards to the system allocator and counts the calls
//! that allocate (`alloc`, `alloc_zeroed`, `realloc`) and the bytes live on the heap.
//!
//! A test binary declares it in one line, and then reads the counters around the code it
//! measures with a [`Scope`]:
//!
//! ```ignore
//! use nexrtc_test_support::alloc::{CountingAllocator, Scope};
//!
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//!
//! let scope = Scope::start();
//! // ... the code measured ...
//! assert_eq!(scope.allocations(), 0);
//! ```
//!
//! The counters are process-wide: every thread's allocations count, so a test that measures
//! should be the only test of its binary (nextest runs each test in a process of its own).
//!
//! This file uses only `std`: `turn-core`'s tests include it with `#[path]` rather than
//! depend on this crate (which depends on `turn-core`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

/// The system allocator, counting. Declare it with `#[global_allocator]`.
pub struct CountingAllocator;

fn grew(by: usize) {
    LIVE_BYTES.fetch_add(by as i64, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        grew(layout.size());
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        grew(layout.size());
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The counters at one moment; what was allocated since is read from it.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    allocations: u64,
    live_bytes: i64,
}

impl Scope {
    /// Starts counting from now.
    ///
    /// Panics when the binary has not declared [`CountingAllocator`] as its global
    /// allocator: every count would read 0, and a test asserting "nothing allocated" would
    /// pass without measuring anything.
    pub fn start() -> Scope {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        drop(std::hint::black_box(Box::new(0u64)));
        assert!(
            ALLOCATIONS.load(Ordering::Relaxed) > before,
            "declare `#[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator;`"
        );
        Scope {
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
            live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        }
    }

    /// Calls that allocated (`alloc`, `alloc_zeroed`, `realloc`) since [`Scope::start`].
    pub fn allocations(&self) -> u64 {
        ALLOCATIONS.load(Ordering::Relaxed) - self.allocations
    }

    /// Heap bytes live now minus those live at [`Scope::start`] (negative when more was
    /// freed than allocated).
    pub fn live_bytes(&self) -> i64 {
        LIVE_BYTES.load(Ordering::Relaxed) - self.live_bytes
    }
}

//! Hints about memory for the large per-row arrays of a label set: huge pages and prefetches.
//!
//! Owns the two unsafe calls behind those hints, each wrapped so that it is only ever advice:
//! neither may change what a program computes, and both must never touch memory outside the
//! slice or vector they are given.

/// Asks the kernel to back a large vector's reserved capacity with 2 MiB pages, before it is
/// touched. Random lookups into the id index and the per-row arrays then miss the TLB far
/// less often, which is most of what a shuffled predictions file costs. Only advice: ignored
/// where transparent huge pages are off, and a no-op for small vectors.
pub(crate) fn advise_huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + v.capacity() * std::mem::size_of::<T>();
    let (from, to) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
    if to > from {
        // SAFETY: the range lies inside the vector's own allocation, and MADV_HUGEPAGE only
        // changes how its pages are backed, never their contents.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
        }
    }
}

/// Asks the CPU to start loading `items[i]` into cache. Only a hint: out of bounds is ignored.
#[inline]
pub(crate) fn prefetch<T>(items: &[T], i: usize) {
    if i >= items.len() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `i` is in bounds, and a prefetch never faults and reads nothing.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(items.as_ptr().add(i).cast());
    }
}

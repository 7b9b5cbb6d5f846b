#pragma once
// Counts every allocation of the test binary, so that a test can assert that warmed-up code
// allocates nothing: replaces the global operator new and delete. Every form of new is replaced,
// the nothrow ones too (std::stable_sort's temporary buffer uses them): a form left to the
// runtime would allocate with it and be freed here (AddressSanitizer: alloc-dealloc-mismatch).
//
// Replacement allocation functions must be defined once per program: include this header from
// exactly one translation unit of a test binary.

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace ddm::test {
inline std::atomic<long> allocations{0};

inline void* counted_alloc(std::size_t n, std::size_t align) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = align < alignof(std::max_align_t) ? alignof(std::max_align_t) : align;
  const std::size_t size = ((n == 0 ? 1 : n) + a - 1) / a * a;
  if (void* p = std::aligned_alloc(a, size)) return p;
  throw std::bad_alloc();
}
}  // namespace ddm::test

void* operator new(std::size_t n) { return ddm::test::counted_alloc(n, alignof(std::max_align_t)); }
void* operator new(std::size_t n, std::align_val_t a) {
  return ddm::test::counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return ddm::test::counted_alloc(n, alignof(std::max_align_t));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return ddm::test::counted_alloc(n, static_cast<std::size_t>(a));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

#pragma once
// workspace_pool: workspace that outlives a call, held by the caller and reached through the
// execution context (`ctx.scratch`), so that a function called again and again with the same
// shapes (ddm::sample() and its stepper) allocates only on its first call, without hidden global
// state.
//
//     ddm::workspace_pool pool;                   // outlives every context that points to it
//     const ddm::host_context ctx{.scratch = &pool};
//     for (...) ddm::sample(ctx, {}, field, x, schedule, ddm::dpmpp_2m{});   // allocates once
//
// An entry is lent to one caller at a time: acquire() returns a lease on a free entry that
// matches (same entry type and a caller-given predicate), or makes a new one, and the lease's
// destructor hands it back, also when an exception unwinds. So two threads sampling with the same
// pool, or a field that itself calls sample() with the caller's context (re-entrancy), each get
// an entry of their own: the pool holds as many entries of a kind as were ever in use at once.
// A mutex guards only the lending (one lock per acquire and per release); the entries are used
// outside it. Entries are freed by clear() (those not lent) and by the pool's destructor, which
// must not run while a lease is alive.

#include <cstddef>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

namespace ddm {

class workspace_pool {
  struct entry_base {
    virtual ~entry_base() = default;
  };
  template <class E>
  struct entry final : entry_base {
    template <class Make>
    explicit entry(Make&& make) : value(std::forward<Make>(make)()) {}
    E value;
  };
  struct slot {
    std::unique_ptr<entry_base> entry;
    const void* kind;  // &kind_tag<E>: which E the entry holds, without RTTI
    bool lent;
  };
  template <class E>
  static constexpr char kind_tag = 0;

 public:
  /// Exclusive use of one entry of type E until destruction (or move-from).
  template <class E>
  class lease {
   public:
    lease(lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), value_(std::exchange(other.value_, nullptr)) {}
    lease& operator=(lease&&) = delete;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() {
      if (pool_ != nullptr) pool_->release_(value_);
    }

    [[nodiscard]] E& operator*() const noexcept { return *value_; }
    [[nodiscard]] E* operator->() const noexcept { return value_; }

   private:
    friend class workspace_pool;
    lease(workspace_pool* pool, E* value) noexcept : pool_(pool), value_(value) {}
    workspace_pool* pool_;
    E* value_;
  };

  workspace_pool() = default;
  workspace_pool(const workspace_pool&) = delete;
  workspace_pool& operator=(const workspace_pool&) = delete;
  workspace_pool(workspace_pool&&) = delete;
  workspace_pool& operator=(workspace_pool&&) = delete;
  ~workspace_pool() = default;

  /// A free entry of type E for which matches(const E&) is true, lent to the caller; when there
  /// is none, a new one, E(make()), made outside the lock (so that make() may itself use the
  /// pool) and kept for later calls.
  template <class E, class Matches, class Make>
  [[nodiscard]] lease<E> acquire(Matches&& matches, Make&& make) {
    static_assert(std::is_invocable_r_v<bool, Matches&, const E&>,
                  "ddm::workspace_pool::acquire: matches must be callable as bool(const E&)");
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (slot& s : slots_)
        if (!s.lent && s.kind == &kind_tag<E>) {
          E& value = static_cast<entry<E>*>(s.entry.get())->value;
          if (matches(std::as_const(value))) {
            s.lent = true;
            return lease<E>(this, &value);
          }
        }
    }
    auto made = std::make_unique<entry<E>>(std::forward<Make>(make));
    E* value = &made->value;
    const std::lock_guard<std::mutex> lock(mutex_);
    slots_.push_back(slot{std::move(made), &kind_tag<E>, true});
    return lease<E>(this, value);
  }

  /// Entries held, lent or not.
  [[nodiscard]] std::size_t size() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return slots_.size();
  }

  /// Frees every entry not lent now.
  void clear() {
    std::vector<slot> freed;  // destroyed after the lock is released
    const std::lock_guard<std::mutex> lock(mutex_);
    std::vector<slot> kept;
    for (slot& s : slots_) (s.lent ? kept : freed).push_back(std::move(s));
    slots_ = std::move(kept);
  }

 private:
  template <class E>
  void release_(E* value) noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (slot& s : slots_)
      if (s.kind == &kind_tag<E> && &static_cast<entry<E>*>(s.entry.get())->value == value) {
        s.lent = false;
        return;
      }
  }

  mutable std::mutex mutex_;
  std::vector<slot> slots_;
};

}  // namespace ddm

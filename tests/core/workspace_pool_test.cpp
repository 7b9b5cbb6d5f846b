// ddm::workspace_pool: an entry is lent to one holder at a time and comes back when the lease
// ends; entries are found by type and by the caller's predicate; clear() frees only those not lent.

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>

#include <ddm/core/workspace_pool.hpp>

namespace {

struct sized {
  int size;
  int made_as;  // which make() call made it
};

TEST(WorkspacePool, LendsAnEntryToOneHolderAtATime) {
  ddm::workspace_pool pool;
  int made = 0;
  auto get = [&](int size) {
    return pool.acquire<sized>([&](const sized& s) { return s.size == size; },
                               [&] { return sized{size, ++made}; });
  };
  {
    auto a = get(4);
    EXPECT_EQ(a->made_as, 1);
    auto b = get(4);  // a is lent: a second entry is made
    EXPECT_EQ(b->made_as, 2);
    EXPECT_NE(&*a, &*b);
    EXPECT_EQ(pool.size(), 2U);
  }
  auto c = get(4);  // both were handed back: one of them is lent again, nothing is made
  EXPECT_LE(c->made_as, 2);
  auto d = get(4);
  EXPECT_LE(d->made_as, 2);
  EXPECT_NE(c->made_as, d->made_as);
  EXPECT_EQ(made, 2);
  auto e = get(8);  // no entry matches: a new one
  EXPECT_EQ(e->made_as, 3);
  EXPECT_EQ(pool.size(), 3U);
}

TEST(WorkspacePool, EntriesOfAnotherTypeAreNeverLent) {
  ddm::workspace_pool pool;
  { auto s = pool.acquire<sized>([](const sized&) { return true; }, [] { return sized{1, 1}; }); }
  auto t = pool.acquire<std::string>([](const std::string&) { return true; }, [] { return std::string("x"); });
  EXPECT_EQ(*t, "x");
  EXPECT_EQ(pool.size(), 2U);
}

TEST(WorkspacePool, ClearFreesOnlyEntriesNotLent) {
  ddm::workspace_pool pool;
  auto any = [](const sized&) { return true; };
  auto kept = pool.acquire<sized>(any, [] { return sized{1, 1}; });
  { auto freed = pool.acquire<sized>(any, [] { return sized{2, 2}; }); }
  EXPECT_EQ(pool.size(), 2U);
  pool.clear();
  EXPECT_EQ(pool.size(), 1U);
  EXPECT_EQ(kept->made_as, 1);  // still usable
  auto moved = std::move(kept);  // the lease moves; the entry is handed back once
  EXPECT_EQ(moved->made_as, 1);
}

TEST(WorkspacePool, AFailedMakeLeavesNothingBehind) {
  ddm::workspace_pool pool;
  auto any = [](const sized&) { return true; };
  EXPECT_THROW((void)pool.acquire<sized>(any, []() -> sized { throw std::runtime_error("no memory"); }),
               std::runtime_error);
  EXPECT_EQ(pool.size(), 0U);
}

}  // namespace
